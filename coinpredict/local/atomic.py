"""Atomic file writes: a reader sees the old file or the new one, never a part.

Write to a dot-prefixed temp file in the target directory, flush and fsync it, ``os.replace`` it
over the target, fsync the directory. On any failure the temp file is removed and the target is
left as it was. Errors become :class:`ArtifactError` naming the path and the OS reason.

Modes honour the umask: the temp file is created with 0666 and the kernel applies the process
umask (state files 0640 under the units' ``UMask=0027``); ``public=True`` (the exported files)
adds group read, so nginx reads them through the export directory's setgid group whatever the
umask (docs/deployment.md). The temp file is created with ``O_EXCL | O_NOFOLLOW``: a planted
name or link is never written through. Temp files are named ``.NAME.RANDOM.tmp``;
:func:`sweep_temp_files` removes those a killed run left behind.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import ArtifactError
from coinpredict.base.redact import redact


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP_SUFFIX = ".tmp"


def _create_temp(path: Path, public: bool) -> tuple[int, str]:
    """A new ``.NAME.RANDOM.tmp`` beside ``path`` (mode 0666 minus the umask, + group read when
    ``public``)."""
    while True:
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fd = os.open(name, _CREATE, 0o666)
        except FileExistsError:
            continue
        if public:
            os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRGRP)
        return fd, name


def write_bytes(
    path: Path,
    data: bytes,
    *,
    public: bool = False,
    durable: bool = True,
    sync_dir: bool = True,
) -> None:
    """``durable=False`` skips both fsyncs: still never a partial file for a reader, but after a
    power loss the old content (or none) may be back. Only for caches that are checked on use.
    ``public``: a file nginx serves (group-readable). ``sync_dir=False`` (with ``durable``): the
    file is fsynced before the rename, the directory is not: the caller writing many files into
    one directory calls :func:`sync_directory` once after the last rename, before it reports
    them written."""
    path = Path(path)
    directory = path.parent
    tmp_name: str | None = None
    try:
        fd, tmp_name = _create_temp(path, public)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        crash_point("atomic.before_rename", path.name)
        os.replace(tmp_name, path)
        tmp_name = None
        if durable and sync_dir:
            _fsync_dir(directory)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (disk full?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise ArtifactError(f"cannot write {path}: {reason}{hint}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:  # gone, or the file system turned read-only: the first error counts
                pass


def sync_directory(directory: Path) -> None:
    """fsync ``directory``: the renames into it done so far survive a power loss."""
    try:
        _fsync_dir(Path(directory))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ArtifactError(f"cannot sync {directory}: {reason}") from exc


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    """State and records as JSON, credentials masked (``base.redact``)."""
    text = json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=False)
    text = redact(text)
    write_text(path, text + "\n")


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


def sweep_temp_files(directory: Path, older_than: float) -> list[str]:
    """Remove the ``.*.tmp`` files (or links) in ``directory`` last modified before
    ``older_than`` (epoch seconds): what a killed writer left. The caller holds the lock of
    every writer of ``directory``. Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) or st.st_mtime >= older_than:
                continue
            os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to remove: the next export tries again
        removed.append(entry.name)
    return removed
