"""Job locks under STATE_DIR/locks: two overlapping runs never interleave.

``flock`` locks die with their process, so a ``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from coinpredict.base.errors import ArtifactError, LockBusyError


@contextmanager
def _one(path: Path, wait_ms: int, job: str) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ArtifactError(f"cannot open lock {path}: {os.strerror(exc.errno or 0)}") from exc
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


@contextmanager
def job_locks(lock_dir: Path, names: Sequence[str], *, wait_ms: int, job: str) -> Iterator[None]:
    """Take every named lock (in sorted order, so two jobs never deadlock)."""
    with ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(_one(lock_dir / f"{name}.lock", wait_ms, job))
        yield
