"""The `autonas` command end to end: the MNIST-1D demo with tiny settings, and `autonas profile`.

The commands run as subprocesses, exactly as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import autonas as an
from autonas.demo.data import load_splits
from autonas.demo.model import INPUT_SHAPE, SignalNet

SEED = 3
FLOPS_LIMIT = 60.0


def autonas_command(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autonas", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def run_tiny_demo(output: Path) -> subprocess.CompletedProcess[str]:
    result = autonas_command(
        "demo", "--epochs", "1", "--search-iters", "12", "--finetune-epochs", "1", "--flops-limit", f"{FLOPS_LIMIT:g}%",
        "--seed", str(SEED), "--output", str(output), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path_factory.mktemp("demo") / "out"
    return run_tiny_demo(output), output


@pytest.fixture(scope="module")
def results(demo) -> dict:
    return json.loads((demo[1] / "results.json").read_text())


def test_demo_writes_its_files(demo) -> None:
    _, output = demo
    names = {"subnet.pt2", "subnet.onnx", "subnet.pth", "architecture.json", "candidates.png", "results.json"}
    assert names <= {path.name for path in output.iterdir()}
    assert (output / "candidates.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_prints_the_comparison_table(demo, results) -> None:
    stdout = demo[0].stdout
    assert "original" in stdout and "found subnet" in stdout
    original = results["models"][0]
    assert f"{100 * original['test_accuracy']:.1f}%" in stdout


def test_demo_numbers_are_sane(results) -> None:
    original, found, finetuned = results["models"]
    assert results["options"]["seed"] == SEED and results["options"]["flops_limit"] == FLOPS_LIMIT
    for model in (original, found, finetuned):
        assert 0.0 <= model["test_accuracy"] <= 1.0 and 0.0 <= model["val_accuracy"] <= 1.0
        assert model["latency_ms"] > 0 and model["onnxruntime_latency_ms"] > 0
    assert original["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert results["flops_limit"] == pytest.approx(FLOPS_LIMIT / 100 * original["flops"])
    assert found["flops"] <= results["flops_limit"]
    assert found["params"] < original["params"]
    assert (finetuned["flops"], finetuned["params"]) == (found["flops"], found["params"])


def _flops_by_torch(model: torch.nn.Module) -> int:
    """FLOPs of one signal by torch's own counter (conv, linear), plus the global mean (one MAC per output)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(INPUT_SHAPE))
    return counter.get_total_flops() + 2 * model.head.in_features


def test_demo_with_the_same_seed_gives_the_same_results(results, tmp_path) -> None:
    run_tiny_demo(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["subnet_config"] == results["subnet_config"]
    for first, second in zip(results["models"], again["models"], strict=True):
        for timing in ("latency_ms", "onnxruntime_latency_ms"):
            first.pop(timing), second.pop(timing)
        assert first == second


def test_demo_costs_match_torchs_count_of_the_models(demo, results) -> None:
    original, found, finetuned = results["models"]
    assert original["flops"] == _flops_by_torch(SignalNet())
    assert original["params"] == sum(p.numel() for p in SignalNet().parameters())
    subnet = an.restore(SignalNet(), demo[1] / "subnet.pth")
    assert found["flops"] == finetuned["flops"] == _flops_by_torch(subnet)
    assert found["params"] == finetuned["params"] == sum(p.numel() for p in subnet.parameters())


def test_exported_model_runs_with_plain_torch_and_reproduces_the_accuracy(demo, results, tmp_path) -> None:
    test = load_splits(SEED).test
    torch.save({"images": test.signals, "labels": test.labels}, tmp_path / "test.pt")
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


def test_onnx_model_runs_in_onnxruntime_and_reproduces_the_accuracy(demo, results, tmp_path) -> None:
    test = load_splits(SEED).test
    np.save(tmp_path / "images.npy", test.signals.numpy())
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnxruntime as ort
        session = ort.InferenceSession({str(demo[1] / "subnet.onnx")!r}, providers=["CPUExecutionProvider"])
        logits = session.run(None, {{"x": np.load({str(tmp_path / "images.npy")!r})}})[0]  # the whole split: one batch
        assert not any(name.startswith(("autonas", "torch")) for name in sys.modules), "autonas or torch was imported"
        print(" ".join(map(str, logits.argmax(1))))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    predictions = torch.tensor([int(label) for label in run.stdout.split()])
    accuracy = (predictions == test.labels).float().mean().item()
    assert accuracy == pytest.approx(results["models"][-1]["test_accuracy"], abs=1.5 / len(test))


def test_checkpoint_restores_the_subnet_in_autonas(demo, results) -> None:
    restored = an.restore(SignalNet(), demo[1] / "subnet.pth").eval()
    program = torch.export.load(demo[1] / "subnet.pt2").module()
    images = load_splits(SEED).val.signals
    with torch.no_grad():
        torch.testing.assert_close(restored(images), program(images))
    assert sum(p.numel() for p in restored.parameters()) == results["models"][-1]["params"]


def test_architecture_state_is_json_of_the_searched_and_exported_model(demo, results) -> None:
    state = json.loads((demo[1] / "architecture.json").read_text())
    assert [mode["mode"] for mode in state["modes"]] == ["autonas", "export_nas"]
    rebuilt = an.restore_from_autonas_state(SignalNet(), state)
    assert sum(p.numel() for p in rebuilt.parameters()) == results["models"][-1]["params"]


def profile_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The rows of the printed "Profiling Results" table: {constraint: {column: cell}}."""
    lines = [line for line in stdout.splitlines() if line.startswith(("┃", "│"))]
    header = [cell.strip() for cell in lines[0].strip("┃").split("┃")]
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in lines[1:]]
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows if len(row) == len(header)}


def test_profile_of_a_module_factory_prints_the_search_space_costs() -> None:
    result = autonas_command("profile", "autonas.demo.model:SignalNet", "--input-shape", "1,1,40")
    assert result.returncode == 0, result.stderr
    rows = profile_rows(result.stdout)
    assert rows["flops"]["max"] == f"{_flops_by_torch(SignalNet()) / 1e6:.2f}M"  # 2.46M
    assert rows["params"]["max"] == f"{sum(p.numel() for p in SignalNet().parameters()) / 1e3:.2f}K"  # 62.57K
    for name in ("flops", "params"):
        low, mid, high = (_count(rows[name][column]) for column in ("min", "centroid", "max"))
        assert low < mid < high


def _count(cell: str) -> float:
    """A printed count as a number: "554.00", "10.92K", "2.46M"."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(cell[-1])
    return float(cell) if scale is None else float(cell[:-1]) * scale


SMALL_MODEL = """
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
    plain = autonas_command("profile", "small.py:build", "--input-shape", "1,3,16,16", "--no-convert", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    converted_rows, plain_rows = profile_rows(converted.stdout), profile_rows(plain.stdout)
    assert set(plain_rows["flops"]) == {"full"}
    assert converted_rows["flops"]["min"] != converted_rows["flops"]["max"] == plain_rows["flops"]["full"]
    assert converted_rows["params"]["max"] == plain_rows["params"]["full"]


def test_profile_of_a_missing_module_is_a_clear_error(tmp_path: Path) -> None:
    result = autonas_command("profile", "no_such_models:build", cwd=tmp_path)
    assert result.returncode == 2
    assert "autonas: error: cannot import module 'no_such_models'" in result.stderr
