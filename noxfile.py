"""Every check of the autonas monorepo.

`nox -s tests` is the one command CI runs: each package's unit tests in a virtualenv that
holds only that package and the packages it declares, the integration tests (torch CPU wheel),
the torchvision and timm model-zoo tests (torch 2.14.1 + torchvision 0.29.1 + timm), ruff and the strict docs
build. The Python examples of README.md and docs/ run as integration tests
(integration_tests/test_docs.py; those that need torchvision in the vision session).

Every install goes through a constraints file that pins torch to a wheel on local disk; an
unpinned torch would resolve to a multi-GB CUDA build. Virtualenvs are reused between runs.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES_DIR = ROOT / "packages"
CONSTRAINTS = str(ROOT / "constraints.txt")
VISION_CONSTRAINTS = str(ROOT / "constraints-vision.txt")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]

TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3"]
INTEGRATION_EXTRAS = [
    "scikit-learn>=1.3",
    "matplotlib>=3.7",
    "mnist1d>=0.0.2",
    "distributed>=2024.1",
]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].strip().lower()


def _local_packages() -> dict[str, dict]:
    """Map each package name under packages/ to its parsed pyproject."""
    projects = {}
    for pyproject in sorted(PACKAGES_DIR.glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        projects[data["project"]["name"]] = {"dir": pyproject.parent, **data["project"]}
    return projects


PROJECTS = _local_packages()

#: The optional ONNX packages (ONNX export, ONNX Runtime latency), as autonas-modes declares them.
ONNX_EXTRA = PROJECTS["autonas-modes"]["optional-dependencies"]["onnx"]
#: transformers and accelerate, for autonas.huggingface (the Hugging Face models are tested with them too).
HUGGINGFACE_EXTRA = PROJECTS["autonas"]["optional-dependencies"]["huggingface"]
#: Extra test requirements of single unit sessions (autonas-dynamic builds its wheel with the extension hook).
UNIT_EXTRAS = {"autonas-dynamic": ["hatchling>=1.25"], "autonas-modes": ONNX_EXTRA}


def local_closure(name: str) -> list[str]:
    """The package and every local package it needs, directly or transitively, sorted."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for requirement in PROJECTS[current].get("dependencies", []):
            dep = _requirement_name(requirement)
            if dep in PROJECTS:
                pending.append(dep)
    return sorted(seen)


def install_local(session: nox.Session, names: list[str], *extra: str, constraints: str = CONSTRAINTS) -> None:
    """Install local packages (editable) and extra requirements in ONE pip call.

    Our packages are on no index, so pip must see every local folder of the closure at once.
    """
    editables = [arg for name in names for arg in ("-e", str(PROJECTS[name]["dir"]))]
    session.install("-c", constraints, *editables, *extra)


def _torch_env(session: nox.Session) -> None:
    session.env.setdefault("OMP_NUM_THREADS", "2")
    session.env["TORCH_EXTENSIONS_DIR"] = str(Path(session.virtualenv.location) / "torch_extensions")


def _unit_session(package: str):
    def unit(session: nox.Session) -> None:
        closure = local_closure(package)
        install_local(session, closure, *TEST_TOOLS, *UNIT_EXTRAS.get(package, []))
        _torch_env(session)
        session.env["AUTONAS_UNIT_PACKAGE"] = package
        session.env["AUTONAS_UNIT_CLOSURE"] = ",".join(closure)
        tests = PROJECTS[package]["dir"] / "tests"
        session.run(
            "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tools" / "isolation"), str(tests), *session.posargs
        )

    unit.__doc__ = f"Unit tests of {package}, alone with the packages it declares."
    return unit


UNIT_SESSIONS = []
for _package in PROJECTS:
    _name = f"unit-{_package}"
    nox.session(name=_name, python=PYTHON)(_unit_session(_package))
    UNIT_SESSIONS.append(_name)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Tests that need several packages together, on the torch CPU wheel."""
    install_local(session, list(PROJECTS), *TEST_TOOLS, *INTEGRATION_EXTRAS, *HUGGINGFACE_EXTRA, *ONNX_EXTRA)
    _torch_env(session)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-m", "not vision", str(ROOT / "integration_tests"), *session.posargs
    )


#: The vision libraries of the model-zoo sessions, beside the torch/torchvision pair.
VISION_EXTRAS = ["timm>=1.0.20"]


def _install_vision(session: nox.Session) -> None:
    install_local(
        session,
        list(PROJECTS),
        *TEST_TOOLS,
        *ONNX_EXTRA,
        "torch==2.14.1",
        "torchvision==0.29.1",
        *VISION_EXTRAS,
        constraints=VISION_CONSTRAINTS,
    )
    _torch_env(session)


@nox.session(python=PYTHON)
def vision(session: nox.Session) -> None:
    """Integration tests over torchvision and timm models (one model per family)."""
    _install_vision(session)
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-m", "vision", str(ROOT / "integration_tests"), *session.posargs
    )
    # This torch carries CUDA: compile-check the extension's CUDA sources (skips without a toolkit).
    ext_build = PROJECTS["autonas-dynamic"]["dir"] / "tests" / "test_ext_build.py"
    session.run("pytest", "-q", "-p", "no:cacheprovider", str(ext_build), "-k", "test_cuda_sources_compile")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Everything CI runs: every unit session, the integration sessions, lint and the strict docs build."""
    for name in [*UNIT_SESSIONS, "integration", "vision", "lint", "docs"]:
        session.notify(name)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over every package."""
    install_local(session, list(PROJECTS), "mypy>=1.10")
    session.run("mypy", *(str(p["dir"] / "src") for p in PROJECTS.values()))


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation strictly (mkdocs + mkdocstrings)."""
    install_local(session, list(PROJECTS), "mkdocs>=1.6", "mkdocstrings-python>=1.10")
    session.run("mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(ROOT / "site"))


@nox.session(python=PYTHON)
def zoo(session: nox.Session) -> None:
    """Convert every torchvision architecture variant and the timm families' variants; write docs/zoo.md."""
    _install_vision(session)
    session.run("python", str(ROOT / "tools" / "zoo.py"), *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks under tools/bench (ratios against baselines measured in the same run).

    Uses the torchvision pair so that benchmarks can build ResNet-50, MobileNetV2 and friends.
    """
    install_local(
        session,
        list(PROJECTS),
        *TEST_TOOLS,
        *ONNX_EXTRA,
        *HUGGINGFACE_EXTRA,
        "optuna>=3.5",
        "mnist1d>=0.0.2",
        "scikit-learn>=1.3",
        "torch==2.14.1",
        "torchvision==0.29.1",
        *VISION_EXTRAS,
        constraints=VISION_CONSTRAINTS,
    )
    _torch_env(session)
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "tools" / "bench").glob("bench_*.py"))
    for script in scripts:
        session.run("python", script)
