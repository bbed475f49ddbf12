"""Opt-in wheel build hook: prebuild the compiled kernels into the ``autonas-dynamic`` wheel.

Off by default, and then it never imports torch: the wheel stays pure (``py3-none-any``) and the
kernels are compiled on first use (``autonas_dynamic.ext.loader``). With
``AUTONAS_BUILD_EXTENSIONS=cpu`` (C++), ``cuda`` (C++ and CUDA) or ``1`` (the variant the loader
would pick on this machine), the library is compiled with the torch of the build environment and
shipped under ``autonas_dynamic/ext/_prebuilt/`` in the layout the loader looks up at runtime, and
the wheel is tagged for this Python and platform. torch must be importable while building, so build
without isolation::

    AUTONAS_BUILD_EXTENSIONS=cpu pip install --no-build-isolation packages/autonas-dynamic
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENV_VAR = "AUTONAS_BUILD_EXTENSIONS"
#: Setting -> variant to build (``None``: build nothing; ``"default"``: the loader's default variant).
_SETTINGS: dict[str, str | None] = {"": None, "0": None, "1": "default", "cpu": "cpu", "cuda": "cuda"}
_LOADER = Path("src", "autonas_dynamic", "ext", "loader.py")
_PREBUILT = "autonas_dynamic/ext/_prebuilt"


def _requested_setting(value: str | None) -> str | None:
    """What ``AUTONAS_BUILD_EXTENSIONS=value`` asks for: ``None``, ``"default"``, ``"cpu"`` or ``"cuda"``."""
    setting = (value or "").strip().lower()
    if setting not in _SETTINGS:
        allowed = ", ".join(repr(key) for key in _SETTINGS if key)
        raise ValueError(f"{ENV_VAR}={value!r} is not a valid setting; allowed: {allowed} (or unset)")
    return _SETTINGS[setting]


def _import_loader(root: Path) -> ModuleType:
    """The extension loader, imported from its file so the package's own dependencies need not be installed."""
    try:
        import torch  # noqa: F401  (checked here to say clearly what is missing)
    except ImportError as error:
        raise RuntimeError(
            f"{ENV_VAR} is set, so the compiled kernels are built into the wheel, which needs torch importable "
            f"at build time, but importing it failed ({error}). Install torch first and build without isolation: "
            f"{ENV_VAR}=cpu pip install --no-build-isolation packages/autonas-dynamic"
        ) from error
    path = root / _LOADER
    spec = importlib.util.spec_from_file_location("_autonas_dynamic_build_loader", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import the extension loader from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PrebuiltExtensionHook(BuildHookInterface):
    """Compile the kernels into a temporary cache and force-include the library in the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._scratch: Path | None = None
        setting = _requested_setting(os.environ.get(ENV_VAR))
        if setting is None:
            return
        if version == "editable":
            self.app.display_warning(
                f"{ENV_VAR} is ignored for an editable install (the package runs from the source tree, "
                "where the kernels are compiled on first use)"
            )
            return
        loader = _import_loader(Path(self.root))
        variant = loader.default_variant() if setting == "default" else setting
        self._scratch = Path(tempfile.mkdtemp(prefix="autonas-prebuild-"))
        self.app.display_info(f"{ENV_VAR}: compiling the {variant} kernels into the wheel")
        previous = os.environ.get("AUTONAS_EXTENSIONS_DIR")
        os.environ["AUTONAS_EXTENSIONS_DIR"] = str(self._scratch)
        try:
            loader.build(variant)
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        finally:
            if previous is None:
                del os.environ["AUTONAS_EXTENSIONS_DIR"]
            else:
                os.environ["AUTONAS_EXTENSIONS_DIR"] = previous
        relpath = loader.library_relpath(variant)
        build_data["force_include"][str(self._scratch / relpath)] = f"{_PREBUILT}/{relpath.as_posix()}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
