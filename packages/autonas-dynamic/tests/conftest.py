"""Shared fixtures: one build of the compiled extension per test session.

The build (about a minute on two cores) is made in a temporary cache right after a build of the
same sources was killed half-way in that cache, so every session also checks that an interrupted
build never blocks a later one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from ext_helpers import BUILD, BUILD_TIMEOUT, NO_NINJA, VARIANT, no_ninja

from autonas_dynamic.ext import fused as fused_path
from autonas_dynamic.ext import loader, state


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autonas-extensions")


@pytest.fixture(scope="session")
def library(cache: Path) -> ModuleType:
    """The default build, made in ``cache`` after a build of the same sources was killed half-way there."""
    if no_ninja():
        pytest.skip(NO_NINJA)
    env = {**os.environ, "AUTONAS_EXTENSIONS_DIR": str(cache)}
    killed = subprocess.Popen(
        [sys.executable, "-c", BUILD],
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not list(cache.glob("*/.build-*/*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # let the compiler start
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    scratch = list(cache.glob("*/.build-*"))
    assert scratch, "the killed build left no build folder (it should have been interrupted half-way)"
    (scratch[0] / "lock").touch()  # what torch's own build folder keeps while a build runs

    done = subprocess.run(
        [sys.executable, "-c", BUILD],
        env=env,
        timeout=BUILD_TIMEOUT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    os.environ["AUTONAS_EXTENSIONS_DIR"] = str(cache)
    try:
        module = loader.load_cached(VARIANT)
    finally:
        del os.environ["AUTONAS_EXTENSIONS_DIR"]
    assert module is not None
    return module


@pytest.fixture
def fused(library: ModuleType, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The compiled library, found by ``AUTONAS_EXTENSIONS=1`` in the session's cache; state reset afterwards.

    The size floor of the fused path is lifted so that the small test layers take it.
    """
    monkeypatch.setenv("AUTONAS_EXTENSIONS_DIR", str(cache))
    monkeypatch.setattr(fused_path, "MIN_FUSED_NUMEL", 0)
    state.reset()
    yield library
    state.reset()
