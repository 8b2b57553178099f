import errno
import json
import multiprocessing
import os

import pytest

from coinpredict.base.errors import ArtifactError
from coinpredict.local import atomic


def test_write_and_read(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    assert atomic.read_json(tmp_path / "a.json") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def _write_as_nobody(path, queue):
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # root ignores permissions: drop to nobody for a real EACCES
    try:
        atomic.write_json(path, {"x": 1})
        queue.put("written")
    except ArtifactError as exc:
        queue.put(str(exc))


def test_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_write_as_nobody, args=(locked / "a.json", queue))
    proc.start()
    proc.join()
    assert queue.get(timeout=5) == f"cannot write {locked / 'a.json'}: Permission denied"
    assert list(locked.iterdir()) == []


def test_missing_directory_names_path(tmp_path):
    target = tmp_path / "nope" / "a.json"
    with pytest.raises(ArtifactError) as info:
        atomic.write_json(target, {})
    assert str(info.value) == f"cannot write {target}: No such file or directory"


def test_enospc_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic.write_json(target, {"old": True})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ArtifactError) as info:
        atomic.write_json(target, {"new": True})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert str(info.value) == f"cannot write {target}: No space left on device (disk full?)"
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_readonly_target_dir_via_dev_full(tmp_path):
    """A real ENOSPC: /dev/full refuses every write."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError) as info, open("/dev/full", "wb") as handle:
        handle.write(b"x" * 10)
        handle.flush()
    assert info.value.errno == errno.ENOSPC


def _writer(path, n):
    for i in range(n):
        atomic.write_json(path, {"i": i, "pad": "x" * (i % 50) * 1000})


def test_reader_never_sees_a_partial_file(tmp_path):
    target = tmp_path / "a.json"
    atomic.write_json(target, {"i": -1})
    proc = multiprocessing.get_context("fork").Process(target=_writer, args=(target, 300))
    proc.start()
    reads = 0
    while proc.is_alive() or reads < 1000:
        data = json.loads(target.read_text())
        assert "i" in data
        reads += 1
    proc.join()
    assert proc.exitcode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
