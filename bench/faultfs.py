"""Real file-system faults for the drills and the tests: a full tmpfs (ENOSPC at write), an ext4
whose loop file lives on a full tmpfs (ENOSPC at fsync), a directory unwritable for ``nobody``.

Everything here needs root (mount, losetup, setpriv); without it :class:`Missing` says which
precondition failed. The CLI and the tests run as root, so a permission test drops to ``nobody``
(root ignores file modes) in a directory tree ``nobody`` can traverse (pytest's and mkdtemp's
directories are 0700, which refuses ``nobody`` whatever the target's mode).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


class Missing(Exception):
    """A drill's precondition does not hold (a tool, a mount, a user): the drill fails."""


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size_k: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    m = run("mount", "-t", "tmpfs", "-o", f"size={size_k}k,mode=0755", "tmpfs", str(where))
    if m.returncode != 0:
        raise Missing(f"mount -t tmpfs failed: {m.stderr.strip()[:100]} (needs root)")
    try:
        yield where
    finally:
        run("umount", str(where))


@contextlib.contextmanager
def ext4_on_tmpfs(where: Path, size_k: int) -> Iterator[tuple[Path, Path]]:
    """An ext4 of 32 MB whose loop-device file lives on a tmpfs of ``size_k``: it accepts
    writes into the page cache (it believes it has room) and fails them at fsync once the
    tmpfs below is full. -> (ext4 mount point, tmpfs mount point)."""
    with mounted_tmpfs(where / "backing", size_k) as backing:
        img = backing / "ext4.img"
        with img.open("wb") as f:
            f.truncate(32 << 20)
        # no journal and errors=continue: a failed block write is ENOSPC/EIO at fsync, never a
        # journal abort that turns the file system read-only
        mk = run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "nodiscard", str(img))
        if mk.returncode != 0:
            raise Missing(f"mkfs.ext4 failed: {mk.stderr.strip()[:100]}")
        mnt = where / "ext4"
        mnt.mkdir(exist_ok=True)
        m = run("mount", "-o", "loop,errors=continue", str(img), str(mnt))
        if m.returncode != 0:
            raise Missing(f"mount -o loop failed: {m.stderr.strip()[:100]} (needs /dev/loop*)")
        try:
            yield mnt, backing
        finally:
            if run("umount", str(mnt)).returncode != 0:
                run("umount", "-l", str(mnt))


def fill(directory: Path) -> None:
    """Write a filler file until the file system says ENOSPC."""
    with (directory / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    with contextlib.suppress(OSError), (directory / "filler2").open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 512)


def nobody_prefix() -> list[str]:
    exe = shutil.which("setpriv")
    if exe is None:
        raise Missing("setpriv (util-linux) not installed: cannot run the CLI as nobody")
    return [exe, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def chown_tree(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        for n in [*dirs, *files]:
            os.chown(os.path.join(root, n), uid, uid)
    os.chown(path, uid, uid)


@contextlib.contextmanager
def nobody_tree(prefix: str = "cpfault-") -> Iterator[Path]:
    """A fresh directory under /tmp that ``nobody`` can traverse (mode 0755, owned by root)."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        top.chmod(0o755)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)
