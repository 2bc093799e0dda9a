"""Crash-safe file writes: data goes to a temporary file beside the target, is flushed and fsynced,
then atomically replaces the target, so a kill or a full disk never leaves a half-written file and
the previous version survives any failure during the write."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = ["atomic_writer", "atomic_write_text", "atomic_write_json", "write_jsonl", "json_default", "unused_path"]


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any exception (``OSError: No space left on device``, ``KeyboardInterrupt`` ...) the temporary
    file is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_writer(path) as f:
        f.write(text)
    return Path(path)


def json_default(obj: Any) -> Any:
    """JSON encoding of tensors, numpy values and paths (for prediction rows and metrics)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"A value of type {type(obj).__name__} is not JSON serialisable.")


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Replace ``path`` with ``data`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=json_default) + "\n")


def write_jsonl(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], default: Callable[[Any], Any] = json_default
) -> Path:
    """Replace ``path`` with one JSON object per line, atomically (never appending)."""
    with atomic_writer(path) as f:
        for row in rows:
            f.write(json.dumps(row, default=default, ensure_ascii=False) + "\n")
    return Path(path)


def unused_path(path: Path, keep_suffix: bool = True) -> Path:
    """``path``, or the first of ``<stem>-2<suffix>``, ``-3`` ... that does not exist, so nothing earlier is replaced.

    ``keep_suffix=False`` appends the number to the whole name (directories, names with dots in them).
    """
    stem, suffix = (path.stem, path.suffix) if keep_suffix else (path.name, "")
    n, free = 1, path
    while free.exists():
        n += 1
        free = path.with_name(f"{stem}-{n}{suffix}")
    return free
