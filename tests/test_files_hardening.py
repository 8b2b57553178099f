"""Files as a hardened service writes them: locks and append-only records never follow a
symbolic link (one clear error, the target untouched), modes honour the umask (state 0640 and
exported files 0640 under the units' UMask=0027; exported files stay group-readable under 077),
and temp files a killed export left are swept by the next export."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from helpers import world as hx
from helpers.world import World, run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.base.errors import ArtifactError
from coinpredict.local.locks import job_locks
from coinpredict.local.state import append_jsonl, read_jsonl
from coinpredict.publish.export import export_once

PRECIOUS = "precious content\n"
world = hx.world  # fixture


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9",
        "COINPREDICT_STATE_DIR": str(tmp_path / "state"),
        "COINPREDICT_EXPORT_DIR": str(tmp_path / "www"),
    }


@pytest.mark.parametrize(
    ("link", "what"), [("locks/export.lock", "lock"), ("runs/export.jsonl", "record")]
)
@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_lock_or_run_file_is_one_error_and_its_target_untouched(
    tmp_path, link, what, dangling
):
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text(PRECIOUS)
    path = tmp_path / "state" / link
    path.parent.mkdir(parents=True)
    path.symlink_to(victim)
    got = run_cli(["export"], _env(tmp_path))
    assert got.returncode == 1, got.stderr
    assert got.stderr.splitlines() == [
        f"error: {what} file {path} is a symbolic link; refusing to follow it"
    ]
    if dangling:
        assert not victim.exists()  # never created through the link
    else:
        assert victim.read_text() == PRECIOUS
    assert path.is_symlink()
    assert not (tmp_path / "www").exists()  # refused before the run did anything


def test_records_and_locks_in_process_refuse_links_and_odd_files(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    (tmp_path / "r.jsonl").symlink_to(victim)
    for call in (
        lambda: append_jsonl(tmp_path / "r.jsonl", [{"a": 1}]),
        lambda: append_jsonl(tmp_path / "r.jsonl", [{"a": 1}], keep=5),
        lambda: read_jsonl(tmp_path / "r.jsonl"),
    ):
        with pytest.raises(ArtifactError, match="is a symbolic link"):
            call()
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(ArtifactError, match="is not a regular file"):
        with job_locks(tmp_path, ["fifo"], wait_ms=0, job="test"):
            pass
    assert victim.read_text() == PRECIOUS
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("umask", "state_mode", "export_mode"),
    [(0o027, 0o640, 0o640), (0o077, 0o600, 0o640), (0o022, 0o644, 0o644)],
)
def test_modes_honour_the_umask(world: World, umask, state_mode, export_mode):
    now = int(time.time() * 1000)
    world.up_to_date(world.series(), now)
    got = run_cli(["export"], world.env, preexec_fn=lambda: os.umask(umask))
    assert got.returncode == 0, got.stderr
    state, www = world.settings.state_dir, world.settings.export_dir
    state_files = [
        state / "export-fingerprints.json",
        state / "runs" / "export.jsonl",
        state / "locks" / "export.lock",
        state / "metrics" / "coinpredict.prom",
    ]
    export_files = sorted(www.iterdir())
    assert len(export_files) == 4
    assert {p.name: oct(_mode(p)) for p in state_files} == {
        p.name: oct(state_mode) for p in state_files
    }
    assert {p.name: oct(_mode(p)) for p in export_files} == {
        p.name: oct(export_mode) for p in export_files
    }


def test_leftover_temp_files_are_swept_by_the_next_export(world: World):
    world.up_to_date(world.series(), int(time.time() * 1000))
    www = world.settings.export_dir
    www.mkdir(parents=True, exist_ok=True)
    old = www / ".prediction_BTC_USDT_1h.json.deadbeef.tmp"
    old.write_text("{half a file")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    victim = world.settings.state_dir.parent / "victim"
    victim.write_text(PRECIOUS)
    link = www / ".status.json.0badf00d.tmp"
    link.symlink_to(victim)
    os.utime(link, (hour_ago, hour_ago), follow_symlinks=False)
    keep = [www / ".htaccess", www / "notes.tmp"]
    for path in keep:
        path.write_text("not ours")
        os.utime(path, (hour_ago, hour_ago))
    fresh = www / ".history_BTC_USDT_1h.json.cafe0001.tmp"
    fresh.write_text("being written")
    os.utime(fresh, (time.time() + 60, time.time() + 60))  # newer than this run's start
    result = export_once(world.settings, FixedClock(int(time.time() * 1000)))
    assert sorted(result.swept) == sorted([old.name, link.name])
    assert not old.exists() and not link.is_symlink() and victim.read_text() == PRECIOUS
    assert all(p.exists() for p in keep) and fresh.exists()
    assert sorted(p.name for p in www.iterdir() if p.name.endswith(".json")) == [
        "history_BTC_USDT_1h.json",
        "manifest.json",
        "prediction_BTC_USDT_1h.json",
        "status.json",
    ]
