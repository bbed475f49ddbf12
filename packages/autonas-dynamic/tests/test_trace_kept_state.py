"""Tracing leaves a module's own Python state as it found it (caches a forward fills hold proxies then)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic import SearchSpace, generate_search_space


class CachingScale(nn.Module):
    """Scales by a factor made once per device and cached in eval mode, as timm's EfficientViT attention caches its biases."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[str, torch.Tensor] = {}
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.training:
            return x * 2.0
        key = str(x.device)
        if key not in self.cache:
            self.cache[key] = torch.full((), 2.0)
        return x * self.cache[key]

    def train(self, mode: bool = True) -> CachingScale:
        super().train(mode)
        self.cache = {}
        return self


def make_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 16, 3, padding=1), CachingScale(), nn.Flatten()
    ).eval()


def test_tracing_leaves_caches_and_counters_as_they_were() -> None:
    model = make_model()
    x = torch.randn(2, 3, 8, 8)
    reference = model(x)
    cache = model[3].cache
    assert list(cache) == ["cpu"] and model[3].calls == 1

    space = generate_search_space(model, AutoNASConfig().model_dump())

    assert model[3].cache is cache and list(cache) == ["cpu"]  # the same dict, with only what it held
    assert isinstance(cache["cpu"], torch.Tensor)
    assert model[3].calls == 1
    assert space.hparams() == {"0.out_channels": [32, 64]}
    assert torch.equal(model(x), reference)


def test_a_model_whose_forward_caches_deep_copies_and_exports_after_conversion() -> None:
    model = make_model()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    space.sample(min)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    exported = copy.deepcopy(model)
    SearchSpace(exported).export()
    assert exported[0].out_channels == 32
    assert torch.equal(exported(x), expected)
