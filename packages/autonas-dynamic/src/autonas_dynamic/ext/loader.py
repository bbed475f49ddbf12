"""Building and loading the compiled block kernels (``csrc/``) with ``torch.utils.cpp_extension``.

Builds are cached per torch version, Python version, variant (``cpu``: C++ only; ``cuda``: C++ and
CUDA) and a hash of the sources, under ``$AUTONAS_EXTENSIONS_DIR``, else
``$TORCH_EXTENSIONS_DIR/autonas``, else ``~/.cache/autonas/extensions``. One process builds at a
time: a build holds an exclusive lock on a file beside the build folder (``flock``, released by the
operating system when the process ends, however it ends), and a process that waited for it loads
the finished library instead of compiling its own. Each build runs in a fresh temporary folder that
is renamed into place only when it succeeded, so a build killed half-way leaves nothing behind that
could hang a later load; a cached build is imported directly, without ninja or a compiler. A
library prebuilt into the installed package at wheel-build time (opt-in, see ``hatch_build.py``)
sits under ``_prebuilt/`` in the same layout and is looked up before the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

if sys.platform != "win32":
    import fcntl

__all__ = [
    "PREBUILT_DIR",
    "SOURCE_DIR",
    "build",
    "cache_dir",
    "cached_library",
    "default_variant",
    "library_relpath",
    "load_cached",
]

SOURCE_DIR = Path(__file__).parent / "csrc"
#: Libraries shipped inside a wheel built with ``AUTONAS_BUILD_EXTENSIONS``, laid out like the cache.
PREBUILT_DIR = Path(__file__).parent / "_prebuilt"
_CPP_SOURCES = ("block_ops.cpp", "sliced_parameter.cpp", "module.cpp")
_CUDA_SOURCES = ("block_ops_cuda.cu",)
_HEADERS = ("block_ops.h", "sliced_parameter.h")
#: Unfinished build folders older than this are removed by the next build.
_STALE_BUILD_SECONDS = 3600.0


def _sources(variant: str) -> list[Path]:
    names = _CPP_SOURCES + (_CUDA_SOURCES if variant == "cuda" else ())
    return [SOURCE_DIR / name for name in names]


def _source_hash(variant: str) -> str:
    digest = hashlib.sha256()
    for path in (*_sources(variant), *(SOURCE_DIR / name for name in _HEADERS)):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _module_name(variant: str) -> str:
    return f"autonas_block_ops_{variant}_{_source_hash(variant)}"


def cache_root() -> Path:
    """The folder holding every cached build."""
    if os.environ.get("AUTONAS_EXTENSIONS_DIR"):
        return Path(os.environ["AUTONAS_EXTENSIONS_DIR"])
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]) / "autonas"
    return Path.home() / ".cache" / "autonas" / "extensions"


def library_relpath(variant: str) -> Path:
    """The library of ``variant`` for this torch, Python and source version, relative to the cache root.

    The same relative path locates a prebuilt library under :data:`PREBUILT_DIR`, so one built
    for another torch, Python or source version is never picked up.
    """
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    name = _module_name(variant)
    return _library_file(Path(f"torch{torch.__version__}-{python}-{variant}") / name, name)


def cache_dir(variant: str) -> Path:
    """The folder of the build of ``variant`` for this torch, Python and source version."""
    return cache_root() / library_relpath(variant).parent


def default_variant() -> str:
    """``"cuda"`` where torch was built with CUDA, a GPU is visible and the CUDA toolkit is found; else ``"cpu"``."""
    if torch.version.cuda and torch.cuda.is_available() and _cuda_home() is not None:
        return "cuda"
    return "cpu"


def _cuda_home() -> str | None:
    from torch.utils import cpp_extension

    return cpp_extension.CUDA_HOME


def _library_file(directory: Path, name: str) -> Path:
    # The file name torch.utils.cpp_extension gives a built module.
    return directory / f"{name}{'.pyd' if sys.platform == 'win32' else '.so'}"


def cached_library(variant: str) -> Path | None:
    """The built library of ``variant``: the one prebuilt into the package if it matches, else the cached one."""
    relpath = library_relpath(variant)
    for library in (PREBUILT_DIR / relpath, cache_root() / relpath):
        if library.is_file():
            return library
    return None


def _import_library(path: Path, name: str) -> ModuleType:
    """The library at ``path``, imported once per process (later calls get the same module)."""
    imported = sys.modules.get(name)
    if imported is not None and Path(imported.__file__ or "") == path:
        return imported
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the compiled kernels from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def load_cached(variant: str) -> ModuleType | None:
    """Import the prebuilt or cached build of ``variant``; ``None`` when there is none."""
    library = cached_library(variant)
    if library is None:
        return None
    return _import_library(library, _module_name(variant))


def _remove_stale_builds(parent: Path) -> None:
    now = time.time()
    for folder in parent.glob(".build-*"):
        try:
            if now - folder.stat().st_mtime > _STALE_BUILD_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _put_venv_on_path() -> None:
    """torch runs ``ninja`` from PATH; the ninja package installs it beside the running interpreter."""
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock at ``path``, saying so on stderr when another process holds it.

    The lock is an ``flock`` on an open file: it goes when the process does, so a builder that was
    killed never blocks a later build. Without ``fcntl`` (Windows) builds are not serialised.
    """
    if sys.platform == "win32":
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"autonas: waiting for another process to finish building the extensions (lock: {path})",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(variant: str, *, verbose: bool = False) -> ModuleType:
    """Compile ``variant`` (``"cpu"`` or ``"cuda"``) into the cache, unless a finished build is there, and import it.

    Processes building the same library at once wait for one build (see the module docstring);
    a build prints one line to stderr when it starts, as it takes minutes.

    Raises whatever the compiler or ``torch.utils.cpp_extension`` raises when the build fails.
    """
    if variant not in ("cpu", "cuda"):
        raise ValueError(f"unknown extension variant {variant!r}; allowed: 'cpu', 'cuda'")
    target = cache_dir(variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target.parent / f"{target.name}.lock"):
        cached = cache_root() / library_relpath(variant)
        if cached.is_file():  # finished meanwhile, e.g. by the process this one waited for
            return _import_library(cached, _module_name(variant))
        print(
            f"building autonas extensions for torch {torch.__version__}, {variant}; this takes a few minutes once "
            f"(cached in {target})",
            file=sys.stderr,
            flush=True,
        )
        return _compile(variant, target, verbose=verbose)


def _compile(variant: str, target: Path, *, verbose: bool) -> ModuleType:
    from torch.utils import cpp_extension

    _put_venv_on_path()
    name = _module_name(variant)
    _remove_stale_builds(target.parent)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        flags = ["-O3"]
        cuda_flags = ["-O3"]
        if variant == "cuda":
            flags.append("-DAUTONAS_WITH_CUDA")
            cuda_flags.append("-DAUTONAS_WITH_CUDA")
        module = cpp_extension.load(
            name=name,
            sources=[str(path) for path in _sources(variant)],
            extra_cflags=flags,
            extra_cuda_cflags=cuda_flags,
            extra_include_paths=[str(SOURCE_DIR)],
            build_directory=str(scratch),
            with_cuda=variant == "cuda",
            is_python_module=True,
            verbose=verbose,
        )
        built = _library_file(scratch, name)
        staged = scratch / "library"
        staged.mkdir()
        shutil.copy2(built, _library_file(staged, name))
        try:
            os.rename(staged, target)  # atomic: the cache holds a finished build or none
        except OSError:
            if cached_library(variant) is None:  # only fine when another process finished the same build
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return module
