"""The short set of the reliability drills (bench/drills.py --short), run as ``make drills`` runs
the long one: real influxd, the replay exchange, the real CLI killed at every named crash point,
influxd stopped mid-ingest, a really full disk and a really unwritable directory. The runner
checks every invariant and exits 1 on any problem; these tests hold it to that, and show it fails
on a planted defect."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coinpredict.base.crashpoints import CRASH_AT, CRASH_LOG, DEFECTS, POINTS

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "bench" / "drills.py"
DATA = ROOT / "tests" / "data"

# The short set split in two so that pytest-xdist runs the halves side by side.
POINT_GROUPS = (
    ("ingest.batch_stored", "cycle.ingest_done", "cycle.before_export"),
    ("export.file_replaced", "registry.replace", "atomic.before_rename"),
)


def drills(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    """Run the drill runner -> (exit code, its JSON summary, its output)."""
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--short",
            "--data",
            str(DATA),
            "--json",
            str(summary),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")},
    )
    doc = json.loads(summary.read_text()) if summary.exists() else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def assert_passed(rc: int, doc: dict, out: str, invariants: set[str]) -> None:
    assert rc == 0 and doc["ok"], out[-4000:]
    assert doc["problems"] == []
    for name in invariants:  # each was really checked, and held every time
        checked, broken = doc["invariants"].get(name, [0, 0])
        assert checked > 0 and broken == 0, (name, checked, broken)


def test_point_groups_cover_every_named_crash_point():
    assert sorted(p for group in POINT_GROUPS for p in group) == sorted(POINTS)


@pytest.mark.parametrize("points", POINT_GROUPS, ids=lambda g: "+".join(g))
def test_a_kill_at_every_named_point_then_a_rerun_is_exact(tmp_path, points):
    rc, doc, out = drills(tmp_path, "--only", "points", "--points", ",".join(points))
    assert_passed(rc, doc, out, {"stopped", "exact", "duplicates", "cursor", "rerun"})
    for point in points:
        assert doc["kills"].get(point, 0) >= 1, (point, doc["kills"])
    if "ingest.batch_stored" in points:  # the ingest and cycle scenarios
        assert_passed(rc, doc, out, {"lost", "open", "parse", "windows", "champion"})
    else:  # the export and train scenarios
        assert_passed(rc, doc, out, {"parse", "manifest", "intact", "champion"})
    assert re.search(r"\| kill at points: \w+ +\| 2 +\| 2 +\| 0 +\| 0 +\| 0 +\| 0 ", out), out


def test_influxd_stopped_and_restarted_while_ingest_is_paused(tmp_path):
    rc, doc, out = drills(tmp_path, "--only", "influx")
    assert_passed(rc, doc, out, {"stopped", "reported", "resumed", "cursor", "lost", "exact"})
    said = doc["drills"]["influxd stopped mid-ingest"]["reported"]
    assert any("BTC/USDT 1h: InfluxDB at http://127.0.0.1:" in s for s in said), said
    assert any("is unreachable: Connection refused" in s for s in said), said


def _can_mount_tmpfs(where: Path) -> str | None:
    where.mkdir()
    m = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if m.returncode != 0:
        return f"mount -t tmpfs is impossible here: {m.stderr.strip()}"
    subprocess.run(["umount", str(where)], check=True)
    return None


def test_disk_full_enospc_at_write_and_at_fsync(tmp_path):
    why = _can_mount_tmpfs(tmp_path / "probe")
    if why:
        pytest.skip(why)
    rc, doc, out = drills(tmp_path, "--only", "diskfull")
    assert_passed(rc, doc, out, {"reported", "intact", "untouched", "parse"})
    assert doc["invariants"]["reported"] == [2, 0]  # the write case and the fsync case
    for drill in ("ENOSPC at write (tmpfs)", "ENOSPC at fsync (ext4 on a full tmpfs)"):
        said = doc["drills"][f"export dir full: {drill}"]["reported"]
        assert len(said) == 1 and said[0].startswith("exit 1: error: cannot write "), said
        assert said[0].endswith(": No space left on device (disk full?)"), said


def test_export_dir_unwritable_for_nobody_and_immutable_for_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as nobody and to chattr")
    rc, doc, out = drills(tmp_path, "--only", "unwritable")
    assert_passed(rc, doc, out, {"reported", "intact", "untouched"})
    for drill, reason in (
        ("unwritable for nobody (EACCES)", "Permission denied"),
        ("immutable for root (chattr +i)", "Operation not permitted"),
    ):
        said = doc["drills"][f"export dir {drill}"]["reported"]
        assert len(said) == 1 and said[0].startswith("exit 1: error: cannot write "), said
        assert said[0].endswith(f"/history_BTC_USDT_1h.json: {reason}"), said


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_planted_defect_makes_the_drills_fail(tmp_path, defect):
    """The cursor saved before its batch is acknowledged: a kill at the point shows the cursor
    ahead of the data, and the runner exits 1 naming it (every run: tests/test_crashpoints.py
    shows why the point stops its own thread)."""
    point = DEFECTS[defect]
    rc, doc, out = drills(tmp_path, "--only", "points", "--points", point, "--plant-defect", defect)
    assert rc == 1, out[-3000:]
    assert doc["ok"] is False and doc["invariants"]["cursor"][1] >= 1
    assert any("cursor" in p and "ahead of" in p for p in doc["problems"]), doc["problems"]
    assert "PROBLEM kill at points: ingest: cursor: BTC/USDT" in out


def test_a_drill_that_cannot_run_fails_and_names_the_precondition(tmp_path):
    rc, doc, out = drills(tmp_path, "--only", "points", "--data", str(tmp_path / "nothing"))
    assert rc == 1
    assert "precondition missing:" in out and "nothing/BTC_USDT-1h.csv not found" in out


def test_every_named_point_is_called_and_documented():
    calls = set()
    for path in (ROOT / "coinpredict").rglob("*.py"):
        calls |= set(re.findall(r'crash_point\(\s*"([a-z_.]+)"', path.read_text()))
    assert calls == set(POINTS)
    doc = (ROOT / "docs" / "reliability.md").read_text()
    for point in POINTS:
        assert f"| `{point}`" in doc, point


def _aimed(tmp_path: Path, spec: str, calls: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"crash-{spec}.log"
    code = f"from coinpredict.base.crashpoints import crash_point as c\n{calls}\nprint('end')"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, CRASH_AT: spec, CRASH_LOG: str(log)},
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, log


def _wait_stopped(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t") or proc.poll() is not None:
            return state
        time.sleep(0.01)
    return "timeout"


def test_a_crash_point_stops_at_the_nth_pass_with_its_detail(tmp_path):
    calls = 'c("a.b", "x")\nc("a.b", "y")\nc("other")\nc("a.b", "y")\nc("a.b", "y")'
    proc, log = _aimed(tmp_path, "a.b:y@2", calls)
    try:
        assert _wait_stopped(proc) in ("T", "t")
        lines = log.read_text().splitlines()
        assert lines == [
            "pass a.b x",
            "pass a.b y",
            "pass other",
            "pass a.b y",
            f"stop a.b y {proc.pid}",
        ]
        os.kill(proc.pid, signal.SIGCONT)  # resumed, the run goes on from the point
        assert proc.communicate(timeout=30)[0] == "end\n"
    finally:
        proc.kill()
    proc, log = _aimed(tmp_path, "a.b:z", calls)  # never passed: the run is not stopped
    assert proc.communicate(timeout=30)[0] == "end\n" and "stop" not in log.read_text()
