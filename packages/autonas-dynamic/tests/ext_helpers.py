"""Helpers of the extension tests: the variant built here, subprocess runs, toolchain checks."""

from __future__ import annotations

import os
import subprocess
import sys

from autonas_dynamic.ext import loader

BUILD_TIMEOUT = 600


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


VARIANT = loader.default_variant()  # "cuda" where a GPU and the toolkit are present, else "cpu"
BUILD = f"from autonas_dynamic.ext import loader; loader.build({VARIANT!r})"
DEVICES = ["cpu"] + (["cuda"] if VARIANT == "cuda" else [])


def no_ninja() -> bool:
    from torch.utils.cpp_extension import is_ninja_available

    loader._put_venv_on_path()
    return not is_ninja_available()


NO_NINJA = "ninja is not installed here (a dependency of autonas-dynamic: pip install ninja)"
