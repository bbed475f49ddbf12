"""ONNX export of a subnet: ONNX Runtime computes what the exported torch model computes, for any batch size."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from modes_models import RULES, make_tiny

import autonas_modes as am
from autonas_modes.onnx_export import onnx_feeds
from autonas_modes.workflow import plain_subnet

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_converted_subnet_runs_in_onnxruntime_as_in_torch_for_any_batch(tmp_path: Path) -> None:
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    config = am.sample(model, random.Random(0).choice)
    model.train()
    path = am.export_onnx(model, tmp_path / "nested" / "subnet.onnx", torch.randn(1, 3, 12, 12))

    assert path == tmp_path / "nested" / "subnet.onnx" and path.is_file()
    session = _session(path)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("x", ["batch", 3, 12, 12])]
    with plain_subnet(model) as exported, torch.no_grad():  # what an.export gives, on a copy
        for batch in (1, 3):
            images = torch.randn(batch, 3, 12, 12, generator=torch.Generator().manual_seed(batch))
            (actual,) = session.run(None, {"x": images.numpy()})
            np.testing.assert_allclose(actual, exported(images).numpy(), rtol=1e-4, atol=1e-6)
    # the search space is untouched: still converted, same subnet, train mode kept
    assert am.is_dynamic(model) and am.get_subnet_config(model) == config and model.training


def test_fixed_batch_export_and_a_plain_model_keeps_its_flags(tmp_path: Path) -> None:
    model = make_tiny().train()
    path = am.export_onnx(model, tmp_path / "plain.onnx", torch.randn(2, 3, 12, 12), dynamic_batch=False)
    session = _session(path)
    assert session.get_inputs()[0].shape == [2, 3, 12, 12]
    images = torch.randn(2, 3, 12, 12)
    (actual,) = session.run(None, {"x": images.numpy()})
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        expected = model.eval()(images).numpy()  # the file holds the eval-mode model (BN running stats)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(Exception, match="dimension"):
        session.run(None, {"x": torch.randn(3, 3, 12, 12).numpy()})


class Scaled(nn.Module):
    """A forward with a keyword tensor and a non-tensor argument."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, shift: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.conv(x).mean((2, 3)) * scale + shift


def test_keyword_tensors_become_named_inputs_and_feeds_follow_the_dummy_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Scaled().eval()
    dummy = (torch.randn(2, 3, 6, 6), {"shift": torch.randn(2, 4), "scale": 3.0})
    session = _session(am.export_onnx(model, tmp_path / "kw.onnx", dummy))
    assert [i.name for i in session.get_inputs()] == ["x", "shift"]
    inputs = (torch.randn(5, 3, 6, 6), {"shift": torch.randn(5, 4), "scale": 3.0})
    (actual,) = session.run(None, onnx_feeds(session, inputs))
    with torch.no_grad():
        expected = model(inputs[0], **inputs[1]).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"The ONNX model has 2 inputs \(\['x', 'shift'\]\), the dummy input 1 tensors"
    ):
        onnx_feeds(session, torch.randn(2, 3, 6, 6))


def test_plain_subnet_is_an_exported_copy_and_the_model_keeps_its_space() -> None:
    model = am.convert(make_tiny(), mode=[("autonas", RULES)])
    config = am.sample(model, min)
    images = torch.randn(2, 3, 12, 12)
    with plain_subnet(model) as plain, torch.no_grad():
        assert plain is not model and not am.is_dynamic(plain) and not plain.training
        actual = plain(images)
    assert am.is_dynamic(model) and am.get_subnet_config(model) == config
    with torch.no_grad():
        expected = am.export(model).eval()(images)
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_missing_exporter_packages_name_the_pip_extra(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail as if not installed
    with pytest.raises(
        ModuleNotFoundError, match=rf"ONNX export needs the optional package '{missing}'.*pip install 'autonas\[onnx\]'"
    ):
        am.export_onnx(make_tiny(), tmp_path / "m.onnx", torch.randn(1, 3, 12, 12))
    assert not (tmp_path / "m.onnx").exists()
