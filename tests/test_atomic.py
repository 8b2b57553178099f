"""Atomic writes against real faults: a full tmpfs (ENOSPC at write), an ext4 on a full tmpfs
(ENOSPC at fsync), a directory unwritable for the user the writer runs as."""

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from helpers import realfaults as rf

from coinpredict.base.errors import ArtifactError
from coinpredict.local import atomic


def test_write_and_read(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    assert atomic.read_json(tmp_path / "a.json") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_enospc_at_write_on_a_full_tmpfs_leaves_old_file_and_no_temp(tmp_path):
    with rf.real_or_skip(rf.mounted_tmpfs(tmp_path / "small", 64)) as d:
        target = d / "a.json"
        atomic.write_json(target, {"old": True})
        rf.fill(d)
        with pytest.raises(ArtifactError) as info:
            atomic.write_json(target, {"new": "x" * 20_000})
        assert str(info.value) == f"cannot write {target}: No space left on device (disk full?)"
        assert isinstance(info.value.__cause__, OSError)
        assert json.loads(target.read_text()) == {"old": True}
        assert sorted(p.name for p in d.iterdir()) == ["a.json", "filler", "filler2"]


def test_enospc_at_fsync_on_an_ext4_whose_disk_is_full_leaves_old_file(tmp_path):
    """The ext4 believes it has room (the write lands in the page cache); the tmpfs holding its
    loop file is full, so the data cannot reach the disk and fsync fails."""
    with rf.real_or_skip(rf.ext4_on_tmpfs(tmp_path / "fs", 4096)) as (mnt, backing):
        target = mnt / "a.json"
        atomic.write_json(target, {"old": True})
        os.sync()
        rf.fill(backing)
        data = os.urandom(300_000)
        free = os.statvfs(mnt)
        assert free.f_bavail * free.f_frsize > 10 * len(data)  # write() itself has room
        with pytest.raises(ArtifactError) as info:
            atomic.write_bytes(target, data)
        assert str(info.value) == f"cannot write {target}: No space left on device (disk full?)"
        assert json.loads(target.read_text()) == {"old": True}
        assert [p.name for p in mnt.iterdir() if p.name != "lost+found"] == ["a.json"]


_AS_NOBODY = """
import sys
from pathlib import Path
from coinpredict.base.errors import ArtifactError
from coinpredict.local import atomic
try:
    atomic.write_json(Path(sys.argv[1]), {"x": 1})
    print("written")
except ArtifactError as exc:
    print(exc)
"""


def _write_as_nobody(path):
    out = subprocess.run(
        [*rf.nobody_prefix(), sys.executable, "-c", _AS_NOBODY, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or out.stderr.strip()


def test_permission_denied_for_the_user_the_writer_runs_as():
    """Root ignores modes: the writer runs as nobody, in a tree nobody can traverse. The same
    write into a directory nobody owns succeeds, so the refusal comes from the directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the writer as nobody")
    with rf.nobody_tree() as top:
        mine, locked = top / "mine", top / "locked"
        mine.mkdir()
        locked.mkdir(mode=0o755)  # root's: nobody may read it but not create files in it
        rf.chown_tree(mine, rf.NOBODY)
        assert _write_as_nobody(mine / "a.json") == "written"
        assert json.loads((mine / "a.json").read_text()) == {"x": 1}
        said = _write_as_nobody(locked / "a.json")
        assert said == f"cannot write {locked / 'a.json'}: Permission denied"
        assert list(locked.iterdir()) == []


def test_missing_directory_names_path(tmp_path):
    target = tmp_path / "nope" / "a.json"
    with pytest.raises(ArtifactError) as info:
        atomic.write_json(target, {})
    assert str(info.value) == f"cannot write {target}: No such file or directory"


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


def test_export_fsyncs_each_file_before_its_rename_and_the_directory_once_after(
    tmp_path, monkeypatch
):
    """The series files of one export: every file's content is fsynced before its rename, and
    the directory once after the last rename (not once per file)."""
    import stat as stat_mod

    from coinpredict.publish import export

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat_mod.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append((kind, None))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    jobs = [(f"history_S{i}_USDT_1h.json", lambda i=i: b'{"n": %d}\n' % i) for i in range(9)]
    export._write_series_files(tmp_path, jobs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, _ in jobs)
    kinds = [k for k, _ in events]
    assert kinds.count("dir") == 1 and kinds[-1] == "dir"  # once, after every rename
    assert kinds.count("rename") == 9 and kinds.count("file") == 9
    # each rename comes after a file fsync not used by an earlier rename
    fsynced = 0
    for kind, _ in events:
        if kind == "file":
            fsynced += 1
        elif kind == "rename":
            assert fsynced > 0
            fsynced -= 1
