"""Every Python example of README.md and docs/*.md runs, one test per block (see tools/doctest_md.py).

The blocks of a page run in order in one namespace, in a folder of their own; blocks marked
``vision`` (and those after them on their page) run in the vision session.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autonas_tools_doctest_md", ROOT / "tools" / "doctest_md.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


doctest_md = _load_runner()
BLOCKS = list(doctest_md.iter_blocks())
_RUNS: dict[Path, object] = {}
_FOLDERS: dict[Path, Path] = {}


def _param(block) -> object:
    marks = [pytest.mark.vision] if "vision" in block.marks else []
    if "skip" in block.marks:
        marks.append(pytest.mark.skip(reason="marked <!-- autonas: skip --> in the page"))
    return pytest.param(block, id=block.name, marks=marks)


@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_doc_block_runs(block, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.page not in _RUNS:
        _RUNS[block.page] = doctest_md.PageRun(doctest_md.parse_page(block.page))
        _FOLDERS[block.page] = tmp_path_factory.mktemp(block.page.stem)
    monkeypatch.chdir(_FOLDERS[block.page])
    if "vision" in block.marks:
        pytest.importorskip("torchvision")
    _RUNS[block.page].run_through(block)


# ----------------------------------------------------------------------------- the runner itself

PAGE = """# A page

```python
x = 2
```

Some text.

<!-- autonas: skip -->
```python
this is not python
```

<!-- autonas: setup
y = x * 10
-->

```bash
exit 1
```

```python
>>> w = x + y
>>> print(w)
22
```

<!-- autonas: vision -->
```python
import json
```

```python
z = json.dumps([x, y, w])
```
"""


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.md"
    path.write_text(PAGE)
    return path


def test_the_runner_finds_python_blocks_with_their_lines_and_marks(page: Path) -> None:
    blocks = doctest_md.parse_page(page)
    assert [(b.line, sorted(b.marks), b.hidden, b.is_doctest) for b in blocks] == [
        (4, [], False, False),
        (11, ["skip"], False, False),
        (15, [], True, False),
        (23, [], False, True),
        (30, ["vision"], False, False),
        (34, ["vision"], False, False),  # after a vision block: it may build on it
    ]


def test_the_blocks_of_a_page_share_one_namespace_and_run_in_order(page: Path) -> None:
    blocks = doctest_md.parse_page(page)
    run = doctest_md.PageRun(blocks)
    run.run_through(blocks[-1])  # runs every earlier block first, the skipped one excepted
    assert run.namespace["z"] == "[2, 20, 22]"  # names a doctest defines are seen by later blocks


def test_a_doctest_whose_output_differs_fails_with_the_difference(page: Path) -> None:
    page.write_text(PAGE.replace("22\n", "23\n"))
    blocks = doctest_md.parse_page(page)
    run = doctest_md.PageRun(blocks)
    with pytest.raises(AssertionError, match=r"(?s)Expected:\s+23\s+Got:\s+22"):
        run.run_through(blocks[3])
    with pytest.raises(RuntimeError, match=r"an earlier block of this page failed: .*page\.md:23"):
        run.run_through(blocks[4])


def test_a_failing_block_reports_the_line_of_the_page(page: Path) -> None:
    page.write_text(PAGE.replace("x = 2", "x = undefined_name"))
    blocks = doctest_md.parse_page(page)
    with pytest.raises(NameError) as raised:
        doctest_md.PageRun(blocks).run_through(blocks[0])
    assert (raised.traceback[-1].path, raised.traceback[-1].lineno + 1) == (page, 4)


def test_an_unknown_mark_is_an_error_naming_it(page: Path) -> None:
    page.write_text(PAGE.replace("autonas: skip", "autonas: skipp"))
    with pytest.raises(
        ValueError, match=r"page\.md:9: unknown mark 'skipp'; known marks: \['skip', 'vision'\] and setup"
    ):
        doctest_md.parse_page(page)
