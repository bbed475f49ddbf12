"""`import autonas as an` gives every public name of the contract, as the very object of its home package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import autonas

# every name the public contract lists, with the package that defines it
CONTRACT: dict[str, str] = {
    **dict.fromkeys(
        [
            "convert",
            "search_space_size",
            "get_subnet_config",
            "sample",
            "select",
            "profile",
            "search",
            "export",
            "export_onnx",
            "save",
            "restore",
            "autonas_state",
            "restore_from_autonas_state",
            "AutoNASModeDescriptor",
            "convert_searchspace",
            "restore_searchspace",
            "convert_autonas_searchspace",
            "restore_autonas_searchspace",
            "update_autonas_metadata",
            "sort_parameters",
            "print_search_space_summary",
            "inference_flops",
            "param_count",
            "sample_and_reset",
            "centroid",
            "replace_forward",
            "is_dynamic",
            "is_configurable",
            "named_hparams",
            "ModesError",
            "ApplyModeError",
            "NotConvertedError",
            "InvalidStateError",
        ],
        "autonas_modes",
    ),
    "AutoNASConfig": "autonas_config",
    **dict.fromkeys(
        ["DynamicError", "UnsupportedModelError", "AlreadyConvertedError", "CostModelError"], "autonas_dynamic"
    ),
    **dict.fromkeys(["IterativeSearcher", "RandomSearcher", "EvolveSearcher", "ChoiceSpace"], "autonas_search"),
    **dict.fromkeys(["SearchError", "CheckpointError", "NoSatisfiedCandidateError"], "autonas_search"),
    **dict.fromkeys(
        [
            "AutoNASPatchManager",
            "no_patches",
            "enable_patches",
            "set_patches_enabled",
            "is_patches_enabled",
            "sandwich",
            "soft_cross_entropy",
        ],
        "autonas_patch",
    ),
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_name_is_the_home_packages_object(name: str) -> None:
    home = importlib.import_module(CONTRACT[name])
    assert getattr(autonas, name) is getattr(home, name)


def test_all_lists_exactly_the_contract() -> None:
    assert sorted(autonas.__all__) == sorted([*CONTRACT, "__version__"])
    assert set(autonas.__all__) <= set(dir(autonas))


def test_from_import_star_binds_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from autonas import *", namespace)
    assert {name: namespace[name] for name in CONTRACT} == {name: getattr(autonas, name) for name in CONTRACT}


def test_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'no_such_function'"):
        autonas.no_such_function  # noqa: B018


def test_version_is_the_installed_distribution_version() -> None:
    assert autonas.__version__ == version("autonas")
    assert autonas.__version__.count(".") >= 2


def test_import_is_lazy_and_does_not_load_torch() -> None:
    code = "import sys, autonas; print(sorted(m for m in ('torch', 'autonas_modes', 'importlib.metadata') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_type_stubs_are_generated_from_the_name_tables() -> None:
    tool = Path(__file__).resolve().parents[3] / "tools" / "write_public_stubs.py"
    result = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}run: python tools/write_public_stubs.py"
