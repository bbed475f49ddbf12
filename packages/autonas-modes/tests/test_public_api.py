"""The public names of autonas_modes: every one resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys
import types

import autonas_modes


def test_every_public_name_resolves_to_a_function_class_or_value_not_a_submodule() -> None:
    for name in autonas_modes.__all__:
        value = getattr(autonas_modes, name)
        assert not isinstance(value, types.ModuleType), f"autonas_modes.{name} is a module"
    assert callable(autonas_modes.profile) and callable(autonas_modes.search)


def test_import_loads_neither_torch_nor_the_sibling_packages() -> None:
    code = "import sys, autonas_modes; print(sorted(m for m in ('torch', 'autonas_dynamic', 'autonas_search') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
