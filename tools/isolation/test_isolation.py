"""Run by nox inside every unit virtualenv: the package sees only what it declares.

nox sets AUTONAS_UNIT_PACKAGE (the package under test) and AUTONAS_UNIT_CLOSURE (it and the
local packages it declares, directly or transitively). Outside such a venv this module skips.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ALL_PACKAGES = ["autonas-config", "autonas-search", "autonas-dynamic", "autonas-patch", "autonas-modes", "autonas"]
TORCH_FREE = {"autonas-config", "autonas-search"}

PACKAGE = os.environ.get("AUTONAS_UNIT_PACKAGE")
CLOSURE = set(filter(None, os.environ.get("AUTONAS_UNIT_CLOSURE", "").split(",")))

pytestmark = pytest.mark.skipif(PACKAGE is None, reason="runs only inside a nox unit virtualenv")


def import_name(package: str) -> str:
    return package.replace("-", "_")


@pytest.mark.parametrize("sibling", ALL_PACKAGES)
def test_only_declared_siblings_are_importable(sibling: str) -> None:
    found = importlib.util.find_spec(import_name(sibling)) is not None
    assert found == (sibling in CLOSURE), (
        f"{sibling} importable={found}, declared closure of {PACKAGE}: {sorted(CLOSURE)}"
    )


def test_torch_free_packages_have_no_torch_in_their_venv() -> None:
    if PACKAGE not in TORCH_FREE:
        pytest.skip(f"{PACKAGE} depends on torch")
    assert importlib.util.find_spec("torch") is None, f"torch is installed in the venv of {PACKAGE}"


def test_import_leaves_torch_unloaded_when_torch_free() -> None:
    if PACKAGE not in TORCH_FREE:
        pytest.skip(f"{PACKAGE} depends on torch")
    code = f"import sys, {import_name(PACKAGE)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", f"importing {import_name(PACKAGE)} loaded torch"
