"""Fixtures of the autonas-modes tests."""

from __future__ import annotations

import pytest
import torch
from modes_models import TinyNet, make_tiny


@pytest.fixture
def tiny() -> TinyNet:
    return make_tiny()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
