"""save() / restore() through a file, read back in a fresh Python process."""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from modes_models import RULES, make_tiny

import autonas_modes as am
from autonas_modes import io as am_io

_RESTORE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    import autonas_modes as am
    from modes_models import TinyNet

    model = am.restore((TinyNet, (), {{}}), {checkpoint!r})
    model.eval()
    images = torch.load({images!r}, weights_only=True)
    with torch.no_grad():
        torch.save({{"output": model(images), "dynamic": am.is_dynamic(model),
                    "config": am.get_subnet_config(model) if am.is_dynamic(model) else None}}, {result!r})
    """
)


@pytest.mark.parametrize("stage", ["space", "searched_exported", "sorted"])
def test_restore_in_a_fresh_process_gives_equal_outputs(stage: str, tmp_path: Path, images: torch.Tensor) -> None:
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    if stage == "sorted":
        am.sort_parameters(model)
    if stage == "searched_exported":
        model, _ = am.search(
            model,
            {"flops": "70%"},
            dummy_input=images[:1],
            config={"score_func": lambda m: 0.0, "num_iters": 20, "seed": 0},
        )
    else:
        am.sample(model, random.Random(7).choice)
    checkpoint, image_file, result = tmp_path / "arch.pth", tmp_path / "images.pth", tmp_path / "out.pth"
    am.save(model, checkpoint)
    torch.save(images, image_file)
    script = _RESTORE_SCRIPT.format(
        tests=str(Path(__file__).parent), checkpoint=str(checkpoint), images=str(image_file), result=str(result)
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    restored = torch.load(result, weights_only=True)
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(restored["output"], model(images))
    assert restored["dynamic"] == (stage != "searched_exported")
    if restored["dynamic"]:
        assert restored["config"] == am.get_subnet_config(model)


def test_restore_rejects_files_that_are_not_autonas_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(make_tiny().state_dict(), path)
    with pytest.raises(ValueError, match="Not an autonas checkpoint: expected keys"):
        am.restore(make_tiny(), path)


def test_restore_refuses_wrapped_models(tmp_path: Path) -> None:
    path = tmp_path / "arch.pth"
    am.save(am.convert(make_tiny(), mode=[("autonas", RULES)]), path)
    with pytest.raises(ValueError, match="bare model"):
        am.restore(torch.nn.DataParallel(make_tiny()), path)


def test_save_of_a_wrapped_model_warns_and_saves_the_inner_model(tmp_path: Path, images: torch.Tensor) -> None:
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    am.sample(model, min)
    with pytest.warns(UserWarning, match="unwraps"):
        am.save(torch.nn.DataParallel(model), tmp_path / "arch.pth")
    restored = am.restore(make_tiny(seed=3), tmp_path / "arch.pth")
    assert am.get_subnet_config(restored) == am.get_subnet_config(model)


def test_eval_after_restore_keeps_the_restored_batchnorm_statistics_until_the_subnet_changes(
    tmp_path: Path, images: torch.Tensor
) -> None:
    import warnings

    from autonas_patch import no_patches

    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    am.sample(model, random.Random(7).choice)
    am.save(model, tmp_path / "arch.pth")
    with no_patches(), torch.no_grad():
        expected = model.eval()(images)
    saved_config = am.autonas_state(model)["modes"][0]["metadata"]["subnet_config"]  # JSON form: lists

    restored = am.restore(make_tiny(seed=3), tmp_path / "arch.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "calibration queue not filled" warning
        am.select(restored, saved_config)  # the subnet it already has: nothing changes
        restored.train()
        restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), expected)  # the restored statistics, exactly

    config = am.get_subnet_config(restored, configurable=True)
    am.select(restored, {**config, "blocks.depth": 1 if config["blocks.depth"] != 1 else 3})
    with pytest.warns(UserWarning, match="calibration queue not filled"):
        restored.eval()  # another subnet: its statistics are stale


def test_save_to_a_binary_file_object_and_restore_from_it(images: torch.Tensor) -> None:
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    am.sample(model, random.Random(3).choice)
    buffer = io.BytesIO()
    am.save(model, buffer)
    buffer.seek(0)
    restored = am.restore(make_tiny(seed=5), buffer)
    assert am.get_subnet_config(restored) == am.get_subnet_config(model)
    assert not (model.training or restored.training)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images))


class _Encoder(torch.nn.Module):
    """A token encoder whose output is its stream, returned as ``last_hidden_state``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 64)
        self.norm = torch.nn.LayerNorm(64)
        self.fc1, self.fc2 = torch.nn.Linear(64, 128), torch.nn.Linear(128, 64)

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embed(ids)
        return {"last_hidden_state": x + self.fc2(torch.relu(self.fc1(self.norm(x))))}


def test_a_state_saved_before_the_outputs_section_restores_with_every_output_kept() -> None:
    """Saves without an ``outputs`` key kept every output's size; the default would search the stream."""
    model = am.convert(_Encoder().eval(), mode=[("autonas", {"outputs": {}})])
    am.sample(model, random.Random(0).choice)
    state = am.autonas_state(model)
    del state["modes"][0]["config"]["outputs"]  # as written before the section existed
    buffer = io.BytesIO()
    torch.save({"autonas_state": state, "model_state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    restored = am.restore(_Encoder().eval(), buffer)
    assert am.get_subnet_config(restored) == am.get_subnet_config(model)
    assert "embed.embedding_dim" not in am.get_subnet_config(restored)
    assert "embed.embedding_dim" in am.get_subnet_config(am.convert(_Encoder(), mode="autonas"))  # the new default
    ids = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(restored(ids), model(ids), rtol=0, atol=0)


def _must_not_run(model: torch.nn.Module) -> None:
    pytest.fail("save() computed the state before checking that it can write the file")


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("missing/arch.pth", FileNotFoundError, "cannot write {path}: the folder {tmp}/missing does not exist"),
        ("notes.txt/arch.pth", NotADirectoryError, "cannot write {path}: {tmp}/notes.txt is a file, not a folder"),
        ("folder", IsADirectoryError, "cannot write {path}: it is a folder"),
    ],
)
def test_save_where_it_cannot_write_names_the_path_before_any_work(
    where: str, error: type[OSError], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "folder").mkdir()
    path = tmp_path / where
    monkeypatch.setattr(am_io, "autonas_state", _must_not_run)
    with pytest.raises(error, match=re.escape(message.format(path=path, tmp=tmp_path))):
        am.save(am.convert(make_tiny(), mode=[("autonas", RULES)]), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]


def test_a_save_failing_while_writing_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "arch.pth"
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    am.save(model, path)
    before = path.read_bytes()
    # torch.save opens its output, then fails to pickle the state
    monkeypatch.setattr(am_io, "autonas_state", lambda model: {"unpicklable": lambda: None})
    with pytest.raises((AttributeError, pickle.PicklingError)):
        am.save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch.pth"]


class WideNet(torch.nn.Module):
    """Large enough (about 50 MB of weights) that a save takes a measurable time to write."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*(torch.nn.Linear(1024, 1024) for _ in range(12)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _save_forever(model: torch.nn.Module, path: Path, saved: Any) -> None:
    am.save(model, path)
    saved.set()
    while True:
        am.save(model, path)


def test_a_save_killed_at_random_moments_always_leaves_a_restorable_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = am.convert(WideNet(), mode="autonas")
    am.sample(model, random.Random(0).choice)
    path = tmp_path / "arch.pth"
    am.save(model, path)
    expected = model.state_dict()
    context = multiprocessing.get_context("fork")  # the child starts at once, with the model already built
    moments = random.Random(1)
    interrupted = 0
    for _ in range(6):
        saved = context.Event()
        saver = context.Process(target=_save_forever, args=(model, path, saved), daemon=True)
        saver.start()
        assert saved.wait(timeout=30), "the saving process did not complete its first save"
        time.sleep(moments.uniform(0.0, 0.4))
        os.kill(saver.pid, signal.SIGKILL)
        saver.join()
        leftovers = [p for p in tmp_path.iterdir() if p != path]
        assert all(p.name.startswith(".arch.") and p.name.endswith(".tmp.pth") for p in leftovers)
        interrupted += len(leftovers)
        for leftover in leftovers:
            leftover.unlink()
        restored = am.restore(WideNet(), path)
        assert am.get_subnet_config(restored) == am.get_subnet_config(model)
        for name, tensor in restored.state_dict().items():
            assert torch.equal(tensor, expected[name]), name
    assert interrupted >= 1, "no kill landed during a save; the test checked nothing"
