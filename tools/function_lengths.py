"""The longest functions under packages/*/src: lines from ``def`` to the last line, docstring excluded.

Run: ``python tools/function_lengths.py [--top N] [--limit LINES]``; exits 1 when a function
reaches ``--limit`` (default 60).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def function_lengths(root: Path = ROOT) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of every function and method under ``packages/*/src``, longest first."""
    found = []
    for path in sorted(root.glob("packages/*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                length -= (first.end_lineno or first.lineno) - first.lineno + 1
            found.append((length, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    lengths = function_lengths()
    for length, where in lengths[: args.top]:
        print(f"{length:4d}  {where}")
    return 1 if lengths and lengths[0][0] >= args.limit else 0


if __name__ == "__main__":
    sys.exit(main())
