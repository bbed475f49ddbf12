"""save() / restore() through a file, read back in a fresh Python process."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from modes_models import RULES, make_tiny

import autonas_modes as am

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
