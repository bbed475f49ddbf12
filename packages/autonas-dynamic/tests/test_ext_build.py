"""Building, caching and choosing the compiled kernels; the kernels against their torch reference.

One cold C++ build per test session (about a minute on two cores), done after a build of the same
sources was killed half-way in the same cache; the CUDA sources are compile-checked where torch
has CUDA and the toolkit is installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autonas_dynamic.ext import dispatch, loader, state
from autonas_dynamic.ext.kernels import CompiledKernels, TorchKernels

BUILD_TIMEOUT = 600


def _run(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autonas-extensions")


VARIANT = loader.default_variant()  # "cuda" where a GPU and the toolkit are present, else "cpu"
BUILD = f"from autonas_dynamic.ext import loader; loader.build({VARIANT!r})"
DEVICES = ["cpu"] + (["cuda"] if VARIANT == "cuda" else [])


def _no_ninja() -> bool:
    from torch.utils.cpp_extension import is_ninja_available

    loader._put_venv_on_path()
    return not is_ninja_available()


NO_NINJA = "ninja is not installed here (a dependency of autonas-dynamic: pip install ninja)"


@pytest.fixture(scope="session")
def library(cache: Path):
    """The default build, made in ``cache`` after a build of the same sources was killed half-way there."""
    if _no_ninja():
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


def random_block(generator: torch.Generator, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    block = []
    for size in shape:
        length = int(torch.randint(1, size + 1, (1,), generator=generator))
        offset = int(torch.randint(0, size - length + 1, (1,), generator=generator))
        block.append((offset, length))
    return tuple(block)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (9, 5), (8, 6, 3, 3), (4, 3, 3, 5, 5)])
def test_compiled_kernels_equal_the_torch_reference(library, device, dtype, shape) -> None:
    generator = torch.Generator().manual_seed(len(shape))
    compiled, reference = CompiledKernels(library), TorchKernels()
    for _ in range(5):
        full = torch.randn(shape, generator=generator).to(device, dtype)
        block = random_block(generator, shape)
        values = torch.randn([size for _, size in block], generator=generator).to(device, dtype)
        assert torch.equal(compiled.gather(full, block), reference.gather(full, block))
        for accumulate in (False, True):
            got, expected = full.clone(), full.clone()
            compiled.store(got, values, block, accumulate)
            reference.store(expected, values, block, accumulate)
            assert torch.equal(got, expected)
        got, expected = full.clone(), full.clone()
        compiled.zero(got, block)
        reference.zero(expected, block)
        assert torch.equal(got, expected)


def test_compiled_kernels_reject_blocks_outside_the_tensor(library) -> None:
    with pytest.raises(RuntimeError, match=r"block dim 1 \(offset 2, size 4\) lies outside the tensor size 5"):
        library.gather_block(torch.zeros(3, 5), [0, 2], [3, 4])


def test_fused_path_on_compiled_kernels_matches_reference(library, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_ext_fused import CONV_CASES, _conv_case

    results = []
    for kernels in (TorchKernels(), CompiledKernels(library)):
        conv, x = _conv_case(CONV_CASES[1])
        state.reset("1", compiled=False)
        monkeypatch.setattr(dispatch, "active_kernels", lambda kernels=kernels: kernels)
        try:
            conv(x).sum().backward()
            conv.out_channels = 5
            conv(x).square().sum().backward()
        finally:
            state.reset()
        results.append((x.grad, conv._parameters["weight"].grad))
    (expected, got) = results
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


STATUS = "import autonas_dynamic as d; s = d.extensions_status(); print(s.mode, s.path, s.kernels)"


def test_env_switch_selects_the_path(library, cache: Path, tmp_path: Path) -> None:
    def status(mode: str, directory: Path) -> str:
        env = {"AUTONAS_EXTENSIONS": mode, "AUTONAS_EXTENSIONS_DIR": str(directory)}
        result = _run(STATUS, env)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip()

    assert status("0", cache) == "0 reference None"
    assert status("AUTO", tmp_path) == "auto reference None"  # the fused path is measured faster nowhere yet
    if VARIANT == "cpu":  # the fused path loads the C++ build, cached by the fixture here
        assert status("1", cache) == "1 fused compiled (C++)"


def test_invalid_setting_is_a_clear_error() -> None:
    result = _run(STATUS, {"AUTONAS_EXTENSIONS": "yes"})
    assert result.returncode != 0
    assert "AUTONAS_EXTENSIONS='yes' is not a valid setting; allowed: '0', '1', 'auto'" in result.stderr


def test_failed_build_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken_build(variant: str, **_: object) -> None:
        raise RuntimeError("Error building extension 'autonas_block_ops': compiler exploded")

    monkeypatch.setenv("AUTONAS_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(loader, "build", broken_build)
    state.reset("1")
    try:
        with pytest.warns(RuntimeWarning, match="could not be built or loaded .*compiler exploded") as caught:
            status = state.extensions_status()
            state.extensions_status()
            state.fused_path_enabled()
        assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
        assert (status.path, status.kernels) == ("fused", "torch")
        assert "compiler exploded" in status.error
    finally:
        state.reset()


def _cuda_toolkit() -> str | None:
    """A CUDA toolkit folder with nvcc and the runtime headers: ``$CUDA_HOME``, torch's guess, or /usr/local/cuda."""
    from torch.utils import cpp_extension

    for home in (os.environ.get("CUDA_HOME"), cpp_extension.CUDA_HOME, "/usr/local/cuda"):
        if home and Path(home, "bin", "nvcc").exists() and Path(home, "include", "cuda_runtime.h").exists():
            return home
    return None


@pytest.mark.skipif(not torch.version.cuda, reason="this torch has no CUDA support (CPU wheel)")
@pytest.mark.skipif(_cuda_toolkit() is None, reason="no CUDA toolkit (CUDA_HOME with bin/nvcc) found")
@pytest.mark.skipif(VARIANT == "cuda", reason="built and run on the GPU by the session's library fixture")
def test_cuda_sources_compile(tmp_path: Path) -> None:
    if _no_ninja():
        pytest.skip(NO_NINJA)
    env = {
        "AUTONAS_EXTENSIONS_DIR": str(tmp_path),
        "CUDA_HOME": _cuda_toolkit(),
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
    }
    code = "from autonas_dynamic.ext import loader; m = loader.build('cuda'); print(m.has_cuda())"
    result = _run(code, env, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
