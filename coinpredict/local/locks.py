"""Job locks under STATE_DIR/locks: two overlapping runs never interleave.

``flock`` locks die with their process, so a ``kill -9`` never leaves a stale lock behind.
Lock files are opened with ``O_NOFOLLOW`` and must be regular files: a planted symbolic link (or
a FIFO, a device) is one clear error, and its target is never opened, let alone truncated.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from coinpredict.base.errors import ArtifactError, LockBusyError


def open_regular(path: Path, flags: int, what: str) -> int:
    """``os.open`` that never follows a symbolic link and only opens a regular file;
    anything else is an ArtifactError naming ``what`` and the path."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArtifactError(
                f"{what} file {path} is a symbolic link; refusing to follow it"
            ) from exc
        raise ArtifactError(
            f"cannot open {what} file {path}: {os.strerror(exc.errno or 0)}"
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactError(f"{what} file {path} is not a regular file")
    return fd


@contextmanager
def _one(path: Path, wait_ms: int, job: str) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot open lock {path}: {os.strerror(exc.errno or 0)}") from exc
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, "lock")
    try:
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                    raise LockBusyError(
                        f"another {job} run holds the lock {path}"
                        + (f" ({holder})" if holder else "")
                        + f"; waited {wait_ms / 1000:g}s, try again later"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} since {since}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def file_lock(path: Path, wait_ms: int, job: str) -> AbstractContextManager[None]:
    """One lock file at ``path`` (e.g. the cycle units' STATE_DIR/.lock-cycle, shared with
    flock(1)), waiting at most ``wait_ms``."""
    return _one(path, wait_ms, job)


@contextmanager
def job_locks(lock_dir: Path, names: Sequence[str], *, wait_ms: int, job: str) -> Iterator[None]:
    """Take every named lock (in sorted order, so two jobs never deadlock)."""
    with ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(_one(lock_dir / f"{name}.lock", wait_ms, job))
        yield
