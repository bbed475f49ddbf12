"""autonas_patch depends on torch only: it never imports the search-space package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src" / "autonas_patch"


#: Modules imported on first use only: ``compiling`` loads torch._dynamo (over a second), needed under torch.compile.
ON_DEMAND = {"compiling"}


def test_import_loads_no_other_autonas_package_nor_the_compiler() -> None:
    code = (
        "import sys, autonas_patch; "
        "print(sorted(m for m in sys.modules if m.startswith('autonas') or m == 'torch._dynamo'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    modules = [path.stem for path in SOURCE.glob("*.py") if path.stem not in {"__init__", *ON_DEMAND}]
    own = sorted(["autonas_patch", *(f"autonas_patch.{stem}" for stem in modules)])
    assert loaded == own


def test_sources_do_not_mention_the_dynamic_package() -> None:
    offenders = [path.name for path in SOURCE.glob("*.py") if "autonas_dynamic" in path.read_text()]
    assert offenders == []
