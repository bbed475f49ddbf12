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
#: A first use with AUTONAS_EXTENSIONS=1: the fused path loads the C++ library, building it if needed
#: (the CUDA variant, which nothing loads by itself, is built by hand). Prints the module's name and
#: the library file in the cache.
FIRST_USE = (
    "from autonas_dynamic.ext import loader, state\n"
    f"library = state.compiled_library() if {VARIANT!r} == 'cpu' else loader.build({VARIANT!r})\n"
    f"print(library.__name__, loader.cached_library({VARIANT!r}))"
)
DEVICES = ["cpu"] + (["cuda"] if VARIANT == "cuda" else [])


def no_ninja() -> bool:
    from torch.utils.cpp_extension import is_ninja_available

    loader._put_venv_on_path()
    return not is_ninja_available()


NO_NINJA = "ninja is not installed here (a dependency of autonas-dynamic: pip install ninja)"
