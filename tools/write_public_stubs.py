"""Write the ``__init__.pyi`` type stubs of the packages whose public names are imported lazily.

``autonas`` and ``autonas_modes`` list each public name once, in the ``_HOMES`` table of their
``__init__.py`` (home module -> names); ``__all__`` and the lazy imports are derived from it at
run time, and type checkers read the stub this script derives from the same table. Run it after
changing a table: ``python tools/write_public_stubs.py`` (``--check`` only reports stale stubs;
the packages' tests do the same).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
#: The packages with a lazily imported public surface, and where their stub lives.
STUBS = {
    "autonas": ROOT / "packages/autonas/src/autonas/__init__.pyi",
    "autonas_modes": ROOT / "packages/autonas-modes/src/autonas_modes/__init__.pyi",
}


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest, as ruff sorts imported names and ``__all__``."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def render_stub(module: ModuleType) -> str:
    """The stub of ``module``: one explicit re-export (``import X as X``) per name of its ``_HOMES`` table.

    Explicit re-exports are what ``from module import *`` binds for a type checker, so the stub
    needs no ``__all__`` of its own.
    """
    lines = [
        f'"""Types of the public names of ``{module.__name__}``.',
        "",
        "Generated from ``_HOMES`` in ``__init__.py`` by ``tools/write_public_stubs.py``: do not edit.",
        '"""',
        "",
    ]
    for home, names in sorted(module._HOMES.items()):
        lines += [f"from {home} import {name} as {name}" for name in sorted(names, key=_isort_key)]
    lines += ["", "__version__: str", ""]
    return "\n".join(lines)


def stale_stubs() -> list[Path]:
    """The stubs whose text differs from what their package's table gives."""
    return [
        path
        for name, path in STUBS.items()
        if not path.is_file() or path.read_text() != render_stub(importlib.import_module(name))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs (exit status 1 if any)")
    args = parser.parse_args()
    stale = stale_stubs()
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        return 1 if stale else 0
    for name, path in STUBS.items():
        path.write_text(render_stub(importlib.import_module(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
