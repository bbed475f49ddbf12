"""Search checkpoints: plain JSON, written atomically, read back exactly as written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .files import atomic_write

__all__ = ["checkpoint_path", "load_checkpoint", "save_checkpoint"]

_TUPLE = "__tuple__"


def checkpoint_path(path: str | os.PathLike[str] | None, rank: int | None = None) -> Path | None:
    """Where a search keeps its checkpoint.

    `None` means no checkpoint. A directory (an existing one, a path ending with a separator, or
    a path without a file extension) holds `rank<r>.json` (`rank0.json` for a single process);
    a file path is used as given, or as `<stem><rank><suffix>` when `rank` is given.
    """
    if path is None:
        return None
    text = os.fspath(path)
    resolved = Path(text)
    if resolved.is_dir() or text.endswith(("/", os.sep)) or not resolved.suffix:
        return resolved / f"rank{rank or 0}.json"
    if rank is None:
        return resolved
    return resolved.with_name(f"{resolved.stem}{rank}{resolved.suffix}")


def save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path` atomically (`files.atomic_write`), creating its folder if missing.

    A reader never sees a half-written checkpoint, even if the process dies while writing.
    """
    text = json.dumps(_encode(data), separators=(",", ":"))
    with atomic_write(path, create_folder=True) as temporary:
        temporary.write_text(text)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The data saved at `path`, or None if there is no such file.

    Raises:
        CheckpointError: the file is not a checkpoint written by `save_checkpoint`.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read search checkpoint {path}: {error}") from error
    try:
        data = json.loads(text, object_hook=_decode_object)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"search checkpoint {path} is not valid JSON ({error}); it is corrupt") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"search checkpoint {path} holds {type(data).__name__}, not a search state")
    return data


def _encode(value: Any) -> Any:
    """Tag tuples so that they come back as tuples (JSON has only lists)."""
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _TUPLE in obj:
        return tuple(obj[_TUPLE])
    return obj
