"""The whole autonas workflow on torchvision ResNet-18 and MobileNetV2 (torchvision session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.vision


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_workflow_on_torchvision(name: str, tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    from test_workflow import run_workflow

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    run_workflow(
        model,
        factory=f"(torchvision.models.{name}, (), {{'weights': None, 'num_classes': 10}})",
        factory_import="import torchvision",
        input_shape=(2, 3, 64, 64),
        num_classes=10,
        tmp_path=tmp_path,
        num_iters=80,
    )
