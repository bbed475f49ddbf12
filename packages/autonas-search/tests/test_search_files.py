"""atomic_write and writable_folder: a target is replaced whole or not at all, bad targets are named up front."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from autonas_search import files
from autonas_search.files import atomic_write, writable_folder


def _refused(path: Path, **kwargs: bool) -> None:
    with atomic_write(path, **kwargs):
        pytest.fail("the block must not run once the target is refused")


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    path.write_text("old")
    with atomic_write(path) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".model.")
        assert temporary.suffix == ".pth"  # writers that go by the suffix see the target's
        assert temporary.is_file() and path.read_text() == "old"  # the target is untouched while writing
        temporary.write_text("new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


@pytest.mark.parametrize("failure", ["writer", "rename"])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pth"
    path.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    if failure == "rename":
        monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"), atomic_write(path) as temporary:
        temporary.write_text("half")
        if failure == "writer":
            raise OSError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_new_files_get_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    with atomic_write(tmp_path / "atomic.json") as temporary:
        temporary.write_text("{}")
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode


def test_a_missing_folder_is_an_error_unless_asked_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "search.json"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"cannot write {path}: the folder {path.parent} does not exist")
    ):
        _refused(path)
    assert not path.parent.exists()
    with atomic_write(path, create_folder=True) as temporary:
        temporary.write_text("{}")
    assert path.read_text() == "{}"


def test_a_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    path = blocker / "deeper" / "model.pth"
    for create_folder in (False, True):
        with pytest.raises(
            NotADirectoryError, match=re.escape(f"cannot write {path}: {blocker} is a file, not a folder")
        ):
            _refused(path, create_folder=create_folder)
    assert blocker.read_text() == "a file"


def test_a_target_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=re.escape(f"cannot write {tmp_path}: it is a folder")):
        _refused(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    with pytest.raises(
        PermissionError, match=re.escape(f"cannot write {folder / 'x.json'}: cannot create files in {folder}")
    ):
        _refused(folder / "x.json")


def test_writable_folder_creates_missing_folders_and_leaves_them_empty(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    assert writable_folder(folder) == folder
    assert folder.is_dir() and not any(folder.iterdir())
    assert writable_folder(folder) == folder  # an existing folder is fine


def test_writable_folder_names_a_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    with pytest.raises(NotADirectoryError, match=re.escape(f"cannot write {blocker}: it is a file, not a folder")):
        writable_folder(blocker)
    with pytest.raises(
        NotADirectoryError, match=re.escape(f"cannot write {blocker / 'sub'}: {blocker} is a file, not a folder")
    ):
        writable_folder(blocker / "sub")
    assert blocker.read_text() == "a file"
