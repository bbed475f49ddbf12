"""The opt-in wheel build hook (``hatch_build.py``) and the loader's lookup of a prebuilt library.

The wheels are built from this package's folder with the running interpreter's pip, without build
isolation (the hook needs the torch of the running venv). One test compiles the C++ kernels into a
wheel (about a minute on two cores), installs it by unzipping, and checks that the dynamic layers
load that library and compute what the reference path computes, with nothing compiled at runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from ext_helpers import BUILD_TIMEOUT, NO_NINJA, no_ninja

from autonas_dynamic.ext import loader

pytest.importorskip(
    "hatchling", reason="hatchling is not installed here; the wheel-build tests run pip wheel --no-build-isolation"
)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENV_VAR = "AUTONAS_BUILD_EXTENSIONS"
PREBUILT = "autonas_dynamic/ext/_prebuilt/"


def build_wheel(out: Path, setting: str | None, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """``pip wheel`` of this package into ``out`` with ``AUTONAS_BUILD_EXTENSIONS=setting`` (unset if ``None``)."""
    env = {key: value for key, value in os.environ.items() if key != ENV_VAR}
    if setting is not None:
        env[ENV_VAR] = setting
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q"]
    return subprocess.run(
        [*pip_wheel, "-w", str(out), str(PACKAGE_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )


def the_wheel(out: Path) -> Path:
    wheels = list(out.glob("autonas_dynamic-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture()
def torch_blocked(tmp_path: Path) -> Path:
    """A folder that, put first on ``PYTHONPATH``, makes ``import torch`` fail."""
    fake = tmp_path / "blocked" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch is blocked in this build environment')\n")
    return fake.parent


@pytest.mark.parametrize("setting", [None, "0"])
def test_without_the_setting_the_wheel_is_pure_and_torch_is_never_imported(
    tmp_path: Path, torch_blocked: Path, setting: str | None
) -> None:
    done = build_wheel(tmp_path / "out", setting, pythonpath=torch_blocked)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = the_wheel(tmp_path / "out")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "autonas_dynamic/ext/loader.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd")) or name.startswith(PREBUILT)]


def test_a_bad_setting_fails_the_build_naming_the_variable_and_the_allowed_values(tmp_path: Path) -> None:
    done = build_wheel(tmp_path / "out", "gpu")
    assert done.returncode != 0
    assert f"{ENV_VAR}='gpu' is not a valid setting; allowed: '0', '1', 'cpu', 'cuda'" in done.stderr
    assert not list((tmp_path / "out").glob("*.whl"))


def test_without_torch_the_build_says_it_needs_torch_and_no_isolation(tmp_path: Path, torch_blocked: Path) -> None:
    done = build_wheel(tmp_path / "out", "cpu", pythonpath=torch_blocked)
    assert done.returncode != 0
    assert "needs torch importable at build time" in done.stderr
    assert "torch is blocked in this build environment" in done.stderr
    assert "--no-build-isolation" in done.stderr


def test_the_prebuilt_library_is_found_before_the_cache_and_only_for_this_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prebuilt, cache = tmp_path / "prebuilt", tmp_path / "cache"
    monkeypatch.setattr(loader, "PREBUILT_DIR", prebuilt)
    monkeypatch.setenv("AUTONAS_EXTENSIONS_DIR", str(cache))
    relpath = loader.library_relpath("cpu")
    assert loader.cache_dir("cpu") / relpath.name == cache / relpath
    assert loader.cached_library("cpu") is None

    # a library prebuilt for another torch version sits in a folder of another name
    other = prebuilt / relpath.parts[0].replace("torch", "torch0.0.0-", 1) / Path(*relpath.parts[1:])
    other.parent.mkdir(parents=True)
    other.touch()
    assert loader.cached_library("cpu") is None
    (cache / relpath).parent.mkdir(parents=True)
    (cache / relpath).touch()
    assert loader.cached_library("cpu") == cache / relpath
    (prebuilt / relpath).parent.mkdir(parents=True)
    (prebuilt / relpath).touch()
    assert loader.cached_library("cpu") == prebuilt / relpath


# Runs where PYTHONPATH holds the unzipped wheel: the fused path on its library against the reference path.
CHECK_INSTALLED = """
import copy, json
import torch
from torch import nn
import autonas_dynamic
from autonas_dynamic.ext import fused as fused_path
from autonas_dynamic.ext import state
from autonas_dynamic.space import generate_search_space

fused_path.MIN_FUSED_NUMEL = 0  # the small test layers take the fused path too
status = autonas_dynamic.extensions_status()
torch.manual_seed(0)
base = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1))
generate_search_space(base).sample(min)
x = torch.randn(2, 3, 8, 8)
results = {}
for mode in ("1", "0"):
    model = copy.deepcopy(base)
    state.reset(mode)
    node = model[0].weight.grad_fn.name()
    assert ("SliceParameter" in node) == (mode == "1"), node
    out = model(x)
    out.square().sum().backward()
    results[mode] = (out.detach(), [p.grad for p in model.parameters()])
torch.testing.assert_close(results["1"][0], results["0"][0], rtol=1e-5, atol=1e-6)
for fused, reference in zip(results["1"][1], results["0"][1]):
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
print(json.dumps({
    "package": autonas_dynamic.__file__, "path": status.path, "library": status.library, "error": status.error,
    "sliced": base[0].out_channels < 16,
}))
"""


@pytest.fixture(scope="module")
def prebuilt_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this package with the C++ kernels compiled in."""
    if no_ninja():
        pytest.skip(NO_NINJA)
    out = tmp_path_factory.mktemp("prebuilt-wheel")
    done = build_wheel(out, "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    return the_wheel(out)


def test_a_cpu_wheel_is_platform_specific_and_holds_the_library_where_the_loader_looks(prebuilt_wheel: Path) -> None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert f"-{tag}-{tag}-" in prebuilt_wheel.name and not prebuilt_wheel.name.endswith("-any.whl")
    with zipfile.ZipFile(prebuilt_wheel) as archive:
        libraries = [name for name in archive.namelist() if name.startswith(PREBUILT)]
        wheel_info = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    assert libraries == [PREBUILT + loader.library_relpath("cpu").as_posix()]
    assert "Root-Is-Purelib: false" in wheel_info


def test_the_installed_wheel_loads_its_prebuilt_library_without_compiling(prebuilt_wheel: Path, tmp_path: Path) -> None:
    installed, cache = tmp_path / "site", tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(prebuilt_wheel) as archive:
        archive.extractall(installed)
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "AUTONAS_EXTENSIONS": "1",
        "AUTONAS_EXTENSIONS_DIR": str(cache),  # a compile at runtime would land here
    }
    done = subprocess.run([sys.executable, "-c", CHECK_INSTALLED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    prebuilt_dir = installed / "autonas_dynamic" / "ext" / "_prebuilt"
    assert Path(report["package"]).is_relative_to(installed), report["package"]
    assert report["path"] == "fused" and report["error"] is None, report
    assert Path(report["library"]) == prebuilt_dir / loader.library_relpath("cpu")
    assert report["sliced"], "the minimal subnet should slice the first conv"
    assert list(cache.iterdir()) == []
