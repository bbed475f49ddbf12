"""ONNX export of searched subnets of real models: ONNX Runtime computes what the exported torch model computes.

torchvision ResNet-18 and MobileNetV2 (vision session) and a Hugging Face BERT built from a tiny
config, each at a random subnet, checked at two batch sizes through the file's dynamic batch.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import autonas_modes as am
from autonas_modes.onnx_export import onnx_feeds
from autonas_modes.workflow import plain_subnet

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _check_onnx_matches_torch(model: torch.nn.Module, path: Path, inputs: list[Any], select_output: Any) -> None:
    """Export ``model`` with ``inputs[0]`` as the example; every input gives the same outputs in ORT and torch."""
    am.export_onnx(model, path, inputs[0])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with plain_subnet(model) as exported, torch.no_grad():
        for example in inputs:
            expected = select_output(exported, example).numpy()
            actual = session.run(None, onnx_feeds(session, example))[0]
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.vision
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_subnet_in_onnxruntime(name: str, tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = am.convert(getattr(torchvision.models, name)(weights=None, num_classes=10), mode="autonas")
    full = am.get_subnet_config(model)
    assert am.sample(model, random.Random(0).choice) != full  # a smaller subnet
    inputs = [torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch)) for batch in (1, 3)]
    _check_onnx_matches_torch(model, tmp_path / f"{name}.onnx", inputs, lambda m, x: m(x))


def test_hugging_face_bert_subnet_in_onnxruntime(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=3
    )
    torch.manual_seed(0)
    model = am.convert(transformers.BertForSequenceClassification(config).eval(), mode="autonas")
    full = am.get_subnet_config(model)
    assert am.sample(model, random.Random(1).choice) != full  # narrower MLPs

    def example(batch: int) -> tuple[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(0, 100, (batch, 8), generator=generator)
        mask = torch.ones(batch, 8, dtype=torch.long)
        mask[:, 6:] = 0
        return ({"input_ids": ids, "attention_mask": mask},)

    _check_onnx_matches_torch(model, tmp_path / "bert.onnx", [example(2), example(4)], lambda m, x: m(**x[0]).logits)
