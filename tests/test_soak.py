"""The short soak: bench/soak.py for a simulated hour with few symbols, through the real stack.

influxd, nginx and the jobs run in a cgroup (1 GiB, 1 CPU; unconfined without root), the replay
and the jobs share one faked clock that jumps from timer to timer. The hour starts at Monday
2027-02-01 00:00 UTC, the 1st of a month, so every timer fires in it: the 1m, 1h, 1d, 1w and
1M cycles, monitor, detect-gaps at 00:20 and train at 01:00. The 1m instance runs only for the
first five minutes and status is probed every 15 minutes, to keep the run short; the full soak
(`make soak`) runs every timer all along and probes every minute.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("influxd", "nginx", "faketime", "flock")
pytestmark = pytest.mark.skipif(
    any(shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists() for p in NEEDED)
    or not Path("/usr/bin/time").exists(),
    reason=f"the soak needs {', '.join(NEEDED)} and /usr/bin/time",
)

EVERY_TIMER = {
    ("cycle@1m", "1m"): 5,
    ("monitor", "1m"): 3,
    ("cycle@1h", "long"): 2,
    ("cycle@1d", "long"): 1,
    ("cycle@1w", "long"): 1,
    ("cycle@1M", "long"): 1,
    ("monitor", "long"): 31,
    ("detect-gaps", "long"): 1,
    ("train", "long"): 1,
}


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict], str]:
    out = tmp_path_factory.mktemp("soak")
    args = [
        sys.executable, str(ROOT / "bench" / "soak.py"), "--data", str(ROOT / "tests" / "data"),
        "--long", "2", "--fast", "1", "--days-1m", "1", "--start", "2027-02-01T00:00:00",
        "--hours", "1.02", "--fast-minutes", "5", "--probe-every", "15", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = list(csv.DictReader((out / "jobs.csv").open()))
    minutes = list(csv.DictReader((out / "minutes.csv").open()))
    return jobs, minutes, proc.stdout


def test_every_timer_of_the_hour_ran_once_per_tick_and_succeeded(soak) -> None:
    jobs, _minutes, _out = soak
    failed = [j for j in jobs if j["rc"] != "0"]
    assert not failed, failed
    runs = [j for j in jobs if j["phase"] == "soak"]
    counts: dict[tuple[str, str], int] = {}
    for j in runs:
        counts[(j["unit"], j["instance"])] = counts.get((j["unit"], j["instance"]), 0) + 1
    assert counts == EVERY_TIMER
    assert not [j for j in runs if j["skipped"] == "1" or j["over_period"] == "1"]
    # the clock went through the whole hour: first the 1m cycle at 00:00:05, last train at 01:00
    assert runs[0]["fired"] == "2027-02-01T00:00:05Z"
    assert max(j["fired"] for j in runs) == "2027-02-01T01:00:45Z"
    assert all(float(j["peak_rss_mb"]) > 20 for j in runs)  # measured, not left blank


def test_every_series_fresh_at_every_probe_and_memory_measured(soak) -> None:
    _jobs, minutes, out = soak
    assert [m["minute"][11:16] for m in minutes] == ["00:00", "00:15", "00:30", "00:45", "01:00"]
    for m in minutes:
        assert m["long_series"] == "8" and m["long_not_fresh"] == "0", m
        assert float(m["influxd_rss_mb"]) > 10 and float(m["influxd_disk_mb"]) > 0, m
        assert m["nginx_ok"] == "1", m
    assert minutes[0]["1m_series"] == "1" and minutes[0]["1m_not_fresh"] == "0"
    # the jobs and the replay saw the simulated clock, not the driver's alone: the newest candle
    # status reports is the one closed at that simulated minute
    assert minutes[0]["1m_last_candle"] == "2027-01-31T23:59:00Z"
    assert minutes[1]["long_last_candle"] == "2027-01-31T23:00:00Z"
    if "cgroup v" in out:  # root: everything ran inside the 1 GiB cgroup
        assert all(m["oom_kills"] == "0" and 0 < float(m["cg_peak_mb"]) < 1024 for m in minutes)
