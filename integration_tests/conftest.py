"""Shared fixtures of the integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def zoo() -> ModuleType:
    """``tools/zoo.py``: the torchvision and timm model lists and the per-model conversion check."""
    pytest.importorskip("torchvision")
    spec = importlib.util.spec_from_file_location("autonas_tools_zoo", ROOT / "tools" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
