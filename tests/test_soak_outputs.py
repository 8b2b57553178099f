"""bench/soak.py writes its figures while a long run goes on, not only at its end: a day-long run
stopped from outside (a session ending, a kill -9) still leaves jobs.csv, minutes.csv and a
summary that says how far it got. The driver's loop is run here with the jobs stood in for."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _soak() -> ModuleType:
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("soak")


def _finished_at_once(soak: object) -> None:
    """Stand in for the jobs: a launched job is finished at once (one row per event)."""

    def launch(unit: object, fired_ms: int) -> None:
        row = soak._row(unit, fired_ms, "soak")  # type: ignore[attr-defined]
        row.update(wall_s="1.00", rc=0, peak_rss_mb="50", over_period=0, over_70pct=0)
        soak.jobs.append(row)  # type: ignore[attr-defined]

    soak.launch = launch  # type: ignore[attr-defined]
    soak.reap = lambda: None  # type: ignore[attr-defined]
    soak.influx_dead = lambda: False  # type: ignore[attr-defined]


class _NoCgroup:
    def describe(self) -> str:
        return "none"


def test_the_outputs_so_far_are_written_before_each_event_once_due(tmp_path: Path) -> None:
    mod = _soak()
    args = mod.parse(["--out", str(tmp_path)])
    clock = mod.SimClock(tmp_path / "faketime", args.start_ms)
    soak = mod.Soak(tmp_path, clock, _NoCgroup(), {}, tmp_path / ".lock-cycle")
    _finished_at_once(soak)
    rows_on_disk = []

    def checkpoint() -> None:
        mod.write_outputs(soak, args, False, f"in progress at {mod.iso(clock.now_ms())}")
        with (tmp_path / "jobs.csv").open() as handle:
            rows_on_disk.append(len(list(csv.DictReader(handle))))

    soak.checkpoint, soak.checkpoint_s = checkpoint, 0.0  # due before every event
    unit = mod.units(False)[0]
    events = [(args.start_ms, unit)] * 3
    assert soak.run(events, budget_s=600)
    assert rows_on_disk == [0, 1, 2]  # before each event, everything finished until then
    summary = (tmp_path / "summary.txt").read_text()
    assert "in progress at 2027-01-31T23:40" in summary
    assert "| cycle@1h | long | 2 |" in summary
    assert not list(tmp_path.glob(".*.tmp"))  # renamed into place, nothing left half-written


def test_no_checkpoint_before_it_is_due(tmp_path: Path) -> None:
    mod = _soak()
    args = mod.parse(["--out", str(tmp_path)])  # the default: every 5 real minutes
    soak = mod.Soak(
        tmp_path, mod.SimClock(tmp_path / "faketime", args.start_ms), _NoCgroup(), {}, tmp_path
    )
    _finished_at_once(soak)
    calls = []
    soak.checkpoint = lambda: calls.append(1)
    assert soak.checkpoint_s == 300.0
    assert soak.run([(args.start_ms, mod.units(False)[0])] * 3, budget_s=600)
    assert calls == []


def test_a_job_gets_the_clock_of_its_launch_not_the_offset_file(tmp_path: Path) -> None:
    """A job's libfaketime reads no offset file (rereading it in two threads at once can give
    one reader the real time): it gets the offset of its launch, which the driver never moves
    while a job runs."""
    mod = _soak()
    env = {"FAKETIME_TIMESTAMP_FILE": "/x/faketime", "FAKETIME_NO_CACHE": "1", "PATH": "/bin"}
    got = mod.job_clock(env, 5145794.2444)
    assert got == {"PATH": "/bin", "FAKETIME": "+5145794.244"}
    assert env["FAKETIME_NO_CACHE"] == "1"  # the instance's environment is left as it was
    clock = mod.SimClock(tmp_path / "faketime", 1_801_440_000_000)
    offset = float(mod.job_clock({}, clock.offset_s)["FAKETIME"])
    assert abs(offset - float((tmp_path / "faketime").read_text())) < 0.001


def test_a_soak_stopped_while_the_replay_loads_leaves_no_replay_running(
    tmp_path: Path, monkeypatch
) -> None:
    """Ctrl-C (or SIGTERM, which the soak turns into it) while the replay still loads its data:
    the replay process is killed, not left behind holding gigabytes of candles."""
    _soak()
    infra = importlib.import_module("soak_infra")
    started = []
    real_popen = infra.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupted(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(infra.subprocess, "Popen", popen)
    monkeypatch.setattr(infra.time, "sleep", interrupted)
    never_ready = [sys.executable, "-c", "import time; time.sleep(60)"]  # writes no URL
    with pytest.raises(KeyboardInterrupt):  # not swallowed
        infra.start_replay(never_ready, tmp_path, {}, "", tmp_path / "replay.log")
    assert len(started) == 1 and started[0].poll() is not None  # killed and reaped


def test_more_1m_symbols_than_long_ones_is_refused_not_capped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The 1m symbols are the first --fast of the long ones: asking for more than --long must
    stop with a clear error, not run a smaller size than the run's name says."""
    mod = _soak()
    assert mod.parse(["--long", "50", "--fast", "50"]).fast == 50
    with pytest.raises(SystemExit) as stopped:
        mod.parse(["--long", "50", "--fast", "100"])
    assert stopped.value.code == 2
    assert "--fast 100 must be between 0 and --long 50" in capsys.readouterr().err


def test_a_minute_whose_status_was_not_read_is_counted_not_dropped(tmp_path: Path) -> None:
    """A status probe still running when the next minute's fires: that minute is skipped (as
    systemd does), and its freshness is reported as not read instead of vanishing from the
    count of minutes."""
    mod = _soak()
    args = mod.parse(["--out", str(tmp_path)])
    soak = mod.Soak(
        tmp_path, mod.SimClock(tmp_path / "faketime", args.start_ms), _NoCgroup(), {}, tmp_path
    )
    soak._sample_memory = lambda fired_ms: soak.minutes.setdefault(
        fired_ms - fired_ms % mod.MIN_MS, {"minute": mod.iso(fired_ms)}
    )
    probe = next(u for u in mod.units(False) if u.name == "status@long")
    soak.running[(probe.name, probe.instance)] = object()  # the minute before's still runs
    soak.launch(probe, args.start_ms)
    next_minute = args.start_ms + mod.MIN_MS
    soak.minutes[next_minute] = {"minute": mod.iso(next_minute), "long_not_fresh": 0}
    not_read = soak.minutes[args.start_ms]["long_not_fresh"]
    assert not_read == "not read: status of the minute before still running"
    assert [j["skipped"] for j in soak.jobs] == [1]
    assert (
        "minutes with a series not fresh: 0 of 2; minutes whose freshness was not read "
        "(status failed, or still running from the minute before): 1"
    ) in mod.summarize(soak, args, True)
