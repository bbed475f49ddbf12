"""Run the Python examples of the Markdown documentation (README.md and docs/*.md).

Every fenced block whose info string is ``python`` runs; ``bash``, ``text`` and other blocks do
not. The blocks of one page run in order in one namespace, so a page can build on its earlier
blocks. A block whose first line starts with ``>>>`` is a doctest: its shown output must match
(``...`` matches anything). An HTML comment on the line right before a fence marks the block:

- ``<!-- autonas: skip -->``: deliberately partial (a fragment, or it needs files or hardware the
  tests do not have); it is not run, and the text around it should say why it is partial.
- ``<!-- autonas: vision -->``: needs torchvision; this block and every later block of the page
  run in the vision session only.

A comment ``<!-- autonas: setup`` ... ``-->`` holds code that runs at that point but is not shown:
stand-ins for what the text says is the reader's own (a training loop, a data loader). Keep it
short, and keep anything the reader needs to see in the visible blocks.

``integration_tests/test_docs.py`` collects one test per block; ``python tools/doctest_md.py
[PAGE ...]`` runs pages directly. docs/contributing.md explains the conventions for writers.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKS = frozenset({"skip", "vision"})

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[\w+-]*)\s*$")
_MARK = re.compile(r"^\s*<!--\s*autonas:\s*(?P<mark>[\w-]+)\s*-->\s*$")
_SETUP_START = re.compile(r"^\s*<!--\s*autonas:\s*setup\s*$")
_SETUP_END = re.compile(r"^\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One Python example of a page.

    Attributes:
        page: The Markdown file.
        line: The line of the first code line (1-based), so tracebacks point into the page.
        source: The code, dedented.
        marks: ``"skip"`` / ``"vision"``, from the comment before the fence (``vision`` also
            when an earlier block of the page needs torchvision).
        hidden: The block is a ``setup`` comment, not a visible fence.
    """

    page: Path
    line: int
    source: str
    marks: frozenset[str] = frozenset()
    hidden: bool = False

    @property
    def name(self) -> str:
        """``page:line``, the page relative to the repository root when it lies inside."""
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.source.lstrip().startswith(">>>")


def pages() -> list[Path]:
    """README.md and every page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse_page(page: Path) -> list[Block]:
    """The Python blocks of ``page`` (skipped ones included, marked), in order."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    mark: str | None = None
    needs_vision = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if _SETUP_START.match(line):
            end = _closing(lines, index, _SETUP_END, page)
            blocks.append(_block(page, lines, index, end, set(), hidden=True, needs_vision=needs_vision))
            index, mark = end + 1, None
            continue
        found = _MARK.match(line)
        if found:
            mark = found["mark"]
            if mark not in MARKS:
                raise ValueError(f"{page}:{index + 1}: unknown mark {mark!r}; known marks: {sorted(MARKS)} and setup")
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence:  # any fenced block is skipped over whole; only python ones are kept
            end = _closing(lines, index, re.compile(rf"^{re.escape(fence['indent'])}```\s*$"), page)
            if fence["info"] in ("python", "py"):
                needs_vision = needs_vision or mark == "vision"
                marks = {mark} if mark else set()
                blocks.append(_block(page, lines, index, end, marks, hidden=False, needs_vision=needs_vision))
            index, mark = end + 1, None
            continue
        if line.strip():
            mark = None  # a mark applies only to the fence right after it
        index += 1
    return blocks


def _closing(lines: list[str], start: int, pattern: re.Pattern[str], page: Path) -> int:
    for index in range(start + 1, len(lines)):
        if pattern.match(lines[index]):
            return index
    raise ValueError(f"{page}:{start + 1}: block is never closed")


def _block(
    page: Path, lines: list[str], start: int, end: int, marks: set[str], hidden: bool, needs_vision: bool
) -> Block:
    source = textwrap.dedent("\n".join(lines[start + 1 : end])) + "\n"
    if needs_vision:
        marks = marks | {"vision"}
    return Block(page, start + 2, source, frozenset(marks), hidden)


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run ``block`` in ``namespace``; raise ``AssertionError`` with the diff when a doctest's output differs."""
    if not block.is_doctest:
        code = compile("\n" * (block.line - 1) + block.source, str(block.page), "exec")
        exec(code, namespace)
        return
    test = doctest.DocTestParser().get_doctest(block.source, namespace, block.name, str(block.page), block.line - 1)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=report.write, clear_globs=False)
    namespace.update(test.globs)  # the test ran in a copy of the namespace
    if result.failed:
        raise AssertionError(f"doctest {block.name} failed:\n{report.getvalue()}")


@dataclass
class PageRun:
    """The namespace of one page and how far its blocks have run.

    The namespace is that of a module, ``__docs__``, registered in ``sys.modules`` while the page
    runs: classes and functions that a page defines pickle by reference as a script's would.
    """

    blocks: list[Block]
    module: ModuleType = field(default_factory=lambda: ModuleType("__docs__"))
    done: int = 0
    failed: Block | None = None

    @property
    def namespace(self) -> dict[str, Any]:
        return self.module.__dict__

    def run_through(self, block: Block) -> None:
        """Run every not yet run block of the page up to and including ``block`` (skipped ones excepted).

        Earlier blocks run first, so a single block can be run on its own. After a failure the
        later blocks of the page are not run: their namespace would be incomplete.
        """
        if self.failed is not None:
            raise RuntimeError(f"an earlier block of this page failed: {self.failed.name}")
        sys.modules[self.module.__name__] = self.module
        target = self.blocks.index(block)
        for current in self.blocks[self.done : target + 1]:
            if "skip" not in current.marks:
                try:
                    run_block(current, self.namespace)
                except BaseException:
                    self.failed = current
                    raise
            self.done += 1


def iter_blocks() -> Iterator[Block]:
    """Every block of every page."""
    for page in pages():
        yield from parse_page(page)


def main(argv: list[str]) -> int:
    """Run the given pages (default: all) in this process, each in a temporary folder; one line per block."""
    failures = 0
    for page in [Path(arg).resolve() for arg in argv] or pages():
        run = PageRun(parse_page(page))
        with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
            for block in run.blocks:
                if "skip" in block.marks:
                    print(f"{block.name} skipped")
                    continue
                try:
                    run.run_through(block)
                except Exception as error:  # report it and go on with the next page
                    print(f"{block.name} FAILED: {type(error).__name__}: {error}")
                    failures += 1
                    break
                print(f"{block.name} ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
