"""The `autonas` command end to end: the digits demo with tiny settings, and `autonas profile`.

The commands run as subprocesses, exactly as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import autonas as an
from autonas.demo.data import load_digit_splits
from autonas.demo.model import INPUT_SHAPE, DigitsNet

SEED = 3
FLOPS_LIMIT = 60.0


def autonas_command(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autonas", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path_factory.mktemp("demo") / "out"
    result = autonas_command(
        "demo", "--epochs", "1", "--search-iters", "12", "--finetune-epochs", "1", "--flops-limit", f"{FLOPS_LIMIT:g}%",
        "--seed", str(SEED), "--output", str(output), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result, output


@pytest.fixture(scope="module")
def results(demo) -> dict:
    return json.loads((demo[1] / "results.json").read_text())


def test_demo_writes_its_files(demo) -> None:
    _, output = demo
    names = {"subnet.pt2", "subnet.pth", "architecture.json", "candidates.png", "results.json"}
    assert names <= {path.name for path in output.iterdir()}
    assert (output / "candidates.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_prints_the_comparison_table(demo, results) -> None:
    stdout = demo[0].stdout
    assert "original (max subnet)" in stdout and "found subnet" in stdout
    original = results["models"][0]
    assert f"{100 * original['test_accuracy']:.1f}%" in stdout


def test_demo_numbers_are_sane(results) -> None:
    original, found, finetuned = results["models"]
    assert results["options"]["seed"] == SEED and results["options"]["flops_limit"] == FLOPS_LIMIT
    for model in (original, found, finetuned):
        assert 0.0 <= model["test_accuracy"] <= 1.0 and 0.0 <= model["val_accuracy"] <= 1.0
        assert model["latency_ms"] > 0
    assert original["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert results["flops_limit"] == pytest.approx(FLOPS_LIMIT / 100 * original["flops"])
    assert found["flops"] <= results["flops_limit"]
    assert found["params"] < original["params"]
    assert (finetuned["flops"], finetuned["params"]) == (found["flops"], found["params"])


def test_demo_costs_match_the_exported_models(demo, results) -> None:
    original, _, finetuned = results["models"]
    assert original["flops"] == an.inference_flops(DigitsNet(), torch.zeros(INPUT_SHAPE))
    assert original["params"] == sum(p.numel() for p in DigitsNet().parameters())
    program = torch.export.load(demo[1] / "subnet.pt2")
    assert finetuned["params"] == sum(p.numel() for p in program.module().parameters())


def test_exported_model_runs_with_plain_torch_and_reproduces_the_accuracy(demo, results, tmp_path) -> None:
    test = load_digit_splits(SEED).test
    torch.save({"images": test.images, "labels": test.labels}, tmp_path / "test.pt")
    script = textwrap.dedent(f"""
        import sys
        import torch
        program = torch.export.load({str(demo[1] / "subnet.pt2")!r}).module()
        data = torch.load({str(tmp_path / "test.pt")!r})
        with torch.no_grad():
            predictions = program(data["images"]).argmax(1)
        assert not any(name.startswith("autonas") for name in sys.modules), "autonas was imported"
        print((predictions == data["labels"]).float().mean().item())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert float(run.stdout) == pytest.approx(results["models"][-1]["test_accuracy"], abs=1.5 / len(test))


def test_checkpoint_restores_the_subnet_in_autonas(demo, results) -> None:
    restored = an.restore(DigitsNet(), demo[1] / "subnet.pth").eval()
    program = torch.export.load(demo[1] / "subnet.pt2").module()
    images = load_digit_splits(SEED).val.images
    with torch.no_grad():
        torch.testing.assert_close(restored(images), program(images))
    assert sum(p.numel() for p in restored.parameters()) == results["models"][-1]["params"]


def test_architecture_state_is_json_of_the_searched_and_exported_model(demo, results) -> None:
    state = json.loads((demo[1] / "architecture.json").read_text())
    assert [mode["mode"] for mode in state["modes"]] == ["autonas", "export_nas"]
    rebuilt = an.restore_from_autonas_state(DigitsNet(), state)
    assert sum(p.numel() for p in rebuilt.parameters()) == results["models"][-1]["params"]


def test_profile_of_a_module_factory_prints_the_search_space_costs() -> None:
    result = autonas_command("profile", "autonas.demo.model:DigitsNet", "--input-shape", "1,1,8,8")
    assert result.returncode == 0, result.stderr
    for word in ("min", "centroid", "max", "flops", "params"):
        assert word in result.stdout
    flops = an.inference_flops(DigitsNet(), torch.zeros(INPUT_SHAPE))
    assert an.num2hrb(flops) in result.stdout if hasattr(an, "num2hrb") else True


SMALL_MODEL = """
import torch
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
    )
"""


def test_profile_of_a_file_factory_converted_and_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text(SMALL_MODEL)
    converted = autonas_command("profile", "small.py:build", "--input-shape", "1,3,16,16", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert "max" in converted.stdout and "min" in converted.stdout
    plain = autonas_command("profile", "small.py:build", "--input-shape", "1,3,16,16", "--no-convert", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "full" in plain.stdout
