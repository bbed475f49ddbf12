"""Shared fixtures: one build of the compiled extension per test session.

The build (about a minute on two cores) is made in a temporary cache right after a build of the
same sources was killed half-way in that cache, by two processes started together, so every
session also checks that an interrupted build never blocks a later one and that concurrent first
uses share one build.
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
from ext_helpers import BUILD, BUILD_TIMEOUT, FIRST_USE, NO_NINJA, VARIANT, no_ninja

from autonas_dynamic.ext import fused as fused_path
from autonas_dynamic.ext import loader, state


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autonas-extensions")


@pytest.fixture(scope="session")
def first_uses(cache: Path) -> list[subprocess.CompletedProcess[str]]:
    """Two processes' first use of the library (``FIRST_USE``), started together in ``cache``.

    Before them, a build of the same sources was killed half-way there (holding the build lock).
    """
    if no_ninja():
        pytest.skip(NO_NINJA)
    env = {**os.environ, "AUTONAS_EXTENSIONS_DIR": str(cache), "AUTONAS_EXTENSIONS": "1"}
    killed = subprocess.Popen(
        [sys.executable, "-c", BUILD],
        env=env,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
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

    started = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + BUILD_TIMEOUT
    results = []
    try:
        for process in started:
            stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1.0))
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in started:  # on a timeout: no build left running after the session
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results


@pytest.fixture(scope="session")
def library(first_uses: list[subprocess.CompletedProcess[str]], cache: Path) -> ModuleType:
    """The default build, made in ``cache`` by the ``first_uses``."""
    for result in first_uses:
        assert result.returncode == 0, result.stderr[-3000:]
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
