"""Atomic file writes: a reader sees the old file or the new one, never a part.

Write to a dot-prefixed temp file in the target directory, flush and fsync it, ``os.replace`` it
over the target, fsync the directory. On any failure the temp file is removed and the target is
left as it was. Errors become :class:`ArtifactError` naming the path and the OS reason.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import ArtifactError


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """``durable=False`` skips both fsyncs: still never a partial file for a reader, but after a
    power loss the old content (or none) may be back. Only for caches that are checked on use."""
    path = Path(path)
    directory = path.parent
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        crash_point("atomic.before_rename", path.name)
        os.replace(tmp_name, path)
        tmp_name = None
        if durable:
            _fsync_dir(directory)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (disk full?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise ArtifactError(f"cannot write {path}: {reason}{hint}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass


def write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode)


def write_json(path: Path, obj: Any, *, mode: int = 0o644, indent: int | None = 2) -> None:
    text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=False)
    write_text(path, text + "\n", mode=mode)


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing file raises FileNotFoundError, a bad one ArtifactError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
