"""Shared fixtures of the integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script(relative_path: str, module_name: str) -> ModuleType:
    """Import a script of the repository (not an installed package) as the module ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def zoo() -> ModuleType:
    """``tools/zoo.py``: the torchvision and timm model lists and the per-model conversion check."""
    pytest.importorskip("torchvision")
    return _load_script("tools/zoo.py", "autonas_tools_zoo")


@pytest.fixture(scope="session")
def supernet_quality_bench() -> ModuleType:
    """``tools/bench/bench_supernet_quality.py``: the MNIST-1D supernet-training benchmark."""
    return _load_script("tools/bench/bench_supernet_quality.py", "autonas_bench_supernet_quality")
