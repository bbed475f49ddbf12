"""The whole autonas workflow on real models: convert, train, eval, profile, search, export, save/restore.

``run_workflow`` is shared with the torchvision tests in ``test_workflow_vision.py``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import autonas_modes as am
from autonas_dynamic.cost import count_flops
from autonas_patch import PatchManager, recalibrate_batchnorm

HERE = Path(__file__).parent


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class SmallResNet(nn.Module):
    """Widths of 64-128 channels, so the default AutoNAS rules (divisor 32) give several choices."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.stage1 = nn.Sequential(ResidualBlock(64), ResidualBlock(64))
        self.down = nn.Sequential(
            nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU()
        )
        self.stage2 = nn.Sequential(ResidualBlock(128), ResidualBlock(128))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.down(self.stage1(self.stem(x)))))


_RESTORE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {here!r})
    import autonas_modes as am
    {factory_import}
    model = am.restore({factory}, {checkpoint!r}).eval()
    with torch.no_grad():
        torch.save(model(torch.load({images!r}, weights_only=True)), {result!r})
    """
)


def _batches(
    count: int, shape: tuple[int, ...], num_classes: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(shape, generator=gen), torch.randint(0, num_classes, (shape[0],), generator=gen))
        for _ in range(count)
    ]


def _bn_means(model: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def run_workflow(
    model: nn.Module,
    factory: str,
    factory_import: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    tmp_path: Path,
    train_steps: int = 52,
    num_iters: int = 30,
) -> None:
    """Convert, train, eval, profile, search with {"flops": "60%"}, export and restore ``model``."""
    batches = _batches(train_steps, input_shape, num_classes, seed=0)
    images = batches[0][0]
    dummy = images[:1]
    original_flops = count_flops(model.eval(), dummy)

    model = am.convert(model, mode="autonas", mode_kwargs={"seed": 0})
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    configs = []
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        configs.append(tuple(am.get_subnet_config(model, configurable=True).values()))
    assert len(set(configs)) > train_steps // 2, "training forwards must sample changing subnets"

    before = _bn_means(model)
    model.eval()  # back to the max subnet, BN recalibrated from the 50 cached batches
    assert all(hp.active == hp.max for _, hp in am.named_hparams(model, configurable=True))
    assert any(not torch.equal(a, b) for a, b in zip(before, _bn_means(model), strict=True))
    assert PatchManager.get_manager(model).patch_data["train_count_since_sample"] == 100

    stats = am.profile(model, dummy, constraints={"flops": "60%"}, verbose=False)
    assert stats["max"]["flops"] == original_flops
    assert stats["min"]["flops"] < 0.6 * original_flops < stats["max"]["flops"]

    reference = copy.deepcopy(model)
    calib = batches[:4]

    def score(m: nn.Module) -> float:
        with torch.no_grad():
            return -float(F.cross_entropy(m(images), batches[0][1]))

    model, state = am.search(
        model,
        {"flops": "60%"},
        dummy,
        config={"score_func": score, "data_loader": calib, "num_iters": num_iters, "seed": 0},
    )
    limit = 0.6 * original_flops
    flops = count_flops(model, dummy)
    assert 0.85 * limit <= flops <= limit, (flops, limit)
    assert not am.is_dynamic(model)
    assert not any(type(m).__module__.startswith("autonas") for m in model.modules())

    am.select(reference, state["best"]["config"], strict=False)
    reference.eval()
    recalibrate_batchnorm(reference, lambda m: [m(x) for x, _ in calib])
    model.eval()
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(expected, reference(images), rtol=1e-4, atol=1e-5)

    checkpoint, image_file, result = tmp_path / "arch.pth", tmp_path / "images.pth", tmp_path / "out.pth"
    am.save(model, checkpoint)
    torch.save(images, image_file)
    script = _RESTORE_SCRIPT.format(
        here=str(HERE),
        factory_import=factory_import,
        factory=factory,
        checkpoint=str(checkpoint),
        images=str(image_file),
        result=str(result),
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    torch.testing.assert_close(torch.load(result, weights_only=True), expected)


def test_workflow_on_a_small_resnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    run_workflow(
        SmallResNet(),
        factory="(SmallResNet, (), {})",
        factory_import="from test_workflow import SmallResNet",
        input_shape=(4, 3, 16, 16),
        num_classes=10,
        tmp_path=tmp_path,
    )
