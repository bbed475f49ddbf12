"""Building, caching and choosing the compiled extension; its block kernels against torch slicing.

The library is built once per test session by the ``first_uses`` fixture (conftest.py); the CUDA
sources are compile-checked where torch has CUDA and the toolkit is installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import torch
from ext_helpers import BUILD_TIMEOUT, DEVICES, NO_NINJA, VARIANT, no_ninja, run_python

from autonas_dynamic.ext import loader, state

BUILDING = f"building autonas extensions for torch {torch.__version__}, {VARIANT}; this takes a few minutes once"


def random_block(generator: torch.Generator, shape: tuple[int, ...]) -> tuple[slice, ...]:
    block = []
    for size in shape:
        length = int(torch.randint(1, size + 1, (1,), generator=generator))
        offset = int(torch.randint(0, size - length + 1, (1,), generator=generator))
        block.append(slice(offset, offset + length))
    return tuple(block)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (9, 5), (8, 6, 3, 3), (4, 3, 3, 5, 5)])
def test_block_kernels_equal_torch_slicing(library: ModuleType, device: str, dtype: torch.dtype, shape) -> None:
    generator = torch.Generator().manual_seed(len(shape))
    for _ in range(5):
        full = torch.randn(shape, generator=generator).to(device, dtype)
        block = random_block(generator, shape)
        offsets, sizes = [s.start for s in block], [s.stop - s.start for s in block]
        values = torch.randn(sizes, generator=generator).to(device, dtype)
        for accumulate in (False, True):
            got, expected = full.clone(), full.clone()
            library.store_block(got, values, offsets, accumulate)
            if accumulate:
                expected[block] += values
            else:
                expected[block] = values
            assert torch.equal(got, expected)
        got, expected = full.clone(), full.clone()
        library.zero_block(got, offsets, sizes)
        expected[block] = 0
        assert torch.equal(got, expected)


def test_block_kernels_reject_blocks_outside_the_tensor(library: ModuleType) -> None:
    with pytest.raises(RuntimeError, match=r"block dim 1 \(offset 2, size 4\) lies outside the tensor size 5"):
        library.zero_block(torch.zeros(3, 5), [0, 2], [3, 4])


def test_concurrent_first_uses_share_one_build(first_uses: list[subprocess.CompletedProcess[str]], cache: Path) -> None:
    building = [result.stderr.count(BUILDING) for result in first_uses]
    assert sorted(building) == [0, 1], [result.stderr[-2000:] for result in first_uses]
    waiter = first_uses[building.index(0)]
    assert "autonas: waiting for another process to finish building the extensions" in waiter.stderr
    library = cache / loader.library_relpath(VARIANT)
    assert [result.stdout.split() for result in first_uses] == [[library.stem, str(library)]] * 2


STATUS = "import autonas_dynamic as d; s = d.extensions_status(); print(s.mode, s.path, s.library is not None)"


def test_env_switch_selects_the_path(library: ModuleType, cache: Path, tmp_path: Path) -> None:
    def status(mode: str, directory: Path) -> str:
        env = {"AUTONAS_EXTENSIONS": mode, "AUTONAS_EXTENSIONS_DIR": str(directory)}
        result = run_python(STATUS, env)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip()

    assert status("0", cache) == "0 reference False"
    assert status("AUTO", tmp_path) == "auto reference False"  # the fused path is measured faster nowhere yet
    assert not any(tmp_path.iterdir()), "auto must never start a build"
    if VARIANT == "cpu":  # the fused path loads the C++ build, cached by the fixture here
        assert status("1", cache) == "1 fused True"


def test_invalid_setting_is_a_clear_error() -> None:
    result = run_python(STATUS, {"AUTONAS_EXTENSIONS": "yes"})
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
            state.compiled_library()
        assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
        assert (status.path, status.library) == ("reference", None)
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
    if no_ninja():
        pytest.skip(NO_NINJA)
    env = {
        "AUTONAS_EXTENSIONS_DIR": str(tmp_path),
        "CUDA_HOME": _cuda_toolkit(),
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
    }
    code = "from autonas_dynamic.ext import loader; m = loader.build('cuda'); print(m.has_cuda())"
    result = run_python(code, env, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "True"
