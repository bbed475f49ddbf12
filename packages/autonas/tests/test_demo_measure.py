"""The demo's measurements of its models: accuracy, costs, and latency in eager torch and ONNX Runtime."""

from __future__ import annotations

import sys

import pytest
import torch

import autonas as an
from autonas.demo.data import load_splits
from autonas.demo.model import INPUT_SHAPE, SignalNet
from autonas.demo.run import measure_models

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def models() -> list[tuple[str, torch.nn.Module]]:
    torch.manual_seed(0)
    return [("original", SignalNet().eval())]


def test_without_the_onnx_extra_only_eager_latency_is_reported(models, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    (report,) = measure_models(models, load_splits(0))
    assert report.latency_ms > 0 and report.onnxruntime_latency_ms is None
    assert report.flops == an.inference_flops(models[0][1], torch.zeros(INPUT_SHAPE), unit=1)


def test_with_the_onnx_extra_onnxruntime_latency_is_reported(models) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    (report,) = measure_models(models, load_splits(0))
    assert report.latency_ms > 0 and report.onnxruntime_latency_ms > 0
