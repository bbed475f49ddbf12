"""Fixtures of the autonas-modes tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from modes_models import RULES, TinyNet, make_tiny

import autonas_modes as am


@pytest.fixture
def tiny() -> TinyNet:
    return make_tiny()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def space() -> nn.Module:
    """TinyNet converted with the test rules (widths and the block stack's depth searchable)."""
    return am.convert(make_tiny(), mode=[("autonas", RULES)])
