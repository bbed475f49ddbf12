"""Writing files so that an interrupted write never destroys what was there.

Every file autonas writes (search checkpoints, ``save``'d models, the demo's outputs) goes through
:func:`atomic_write`: the writer fills a temporary file in the target's folder, which is flushed to
disk and then renamed over the target. A reader sees the old file or the new one, never a part of
one, even if the process is killed or the machine loses power while writing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["atomic_write", "writable_folder"]


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, create_folder: bool = False) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary file (``.<stem>.<random>.tmp<suffix>``, already created and empty) keeps the
    target's suffix, so writers that go by the file name (``torch.export.save``, ``savefig``) treat
    it as the target. It is created before the block runs, so an unwritable target fails before
    any work. When the block ends normally the
    file is fsynced and renamed over ``path`` (``os.replace``, atomic); when it raises, the file is
    removed and ``path`` is left as it was. Only a process killed inside the block can leave the
    temporary file behind.

    Args:
        path: The file to (over)write.
        create_folder: Create missing parent folders; otherwise a missing folder is an error.

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (and ``create_folder`` is false).
        NotADirectoryError: A parent of ``path`` is a file.
        IsADirectoryError: ``path`` is a folder.
        OSError: No file can be created in the folder (permissions, read-only file system, ...).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    _check_folder(path.parent, create=create_folder, target=path)
    temporary = _create_file(path.parent, f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}", target=path)
    try:
        yield temporary
        _fsync(temporary, os.O_RDWR)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        # make the rename itself durable; some file systems cannot sync a folder, the file is in place anyway
        with suppress(OSError):
            _fsync(path.parent, os.O_RDONLY)


def writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if missing and check that files can be written into it.

    Meant for checking an output folder before long work that ends by writing there.

    Raises:
        NotADirectoryError: ``folder`` or one of its parents is a file.
        OSError: The folder cannot be created or written (permissions, read-only file system, ...).
    """
    folder = Path(folder)
    _check_folder(folder, create=True, target=folder)
    _create_file(folder, f".write-check.{secrets.token_hex(4)}.tmp", target=folder).unlink()
    return folder


def _check_folder(folder: Path, *, create: bool, target: Path) -> None:
    if folder.is_dir():
        return
    blocker = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(
            f"cannot write {target}: {'it' if blocker == target else blocker} is a file, not a folder"
        )
    if not create:
        raise FileNotFoundError(f"cannot write {target}: the folder {folder} does not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise type(error)(f"cannot write {target}: cannot create the folder {folder} ({error.strerror})") from error


def _create_file(folder: Path, name: str, *, target: Path) -> Path:
    path = folder / name
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise type(error)(f"cannot write {target}: cannot create files in {folder} ({error.strerror})") from error
    return path


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
