"""Soak: the whole small VM -- influxd, nginx and every coinpredict timer -- in one cgroup with a
memory limit and a CPU quota, on a simulated clock that jumps from timer to timer.

    nice -n 10 .venv/bin/python bench/soak.py [--long 50] [--fast 10] [--hours 24]
        [--cpus 1.0] [--memory 1024] [--days-1m 180] [--influx small|tuned|default] [--out DIR]

What runs where:

* inside the cgroup (cgroup v1 ``memory`` + ``cpu``, or v2; ``memory.limit_in_bytes`` /
  ``memory.max`` = ``--memory`` MiB, CFS quota = ``--cpus``): one influxd, one nginx serving the
  export directory with the shipped site (deploy/install-nginx.sh), and every job, started as
  systemd starts it (``flock --wait W .lock-cycle coinpredict cycle -t TF``, the 1m cycle on
  ``.lock-cycle-1m`` ...; see systemd/).
  Without root (or without a writable cgroup) everything runs unconfined and the summary says so.
* outside: the replay exchange (it stands for Binance, not for the VM: it holds every candle of
  every file in memory) and the probes (``status --json`` once a minute, per instance).

Two coinpredict instances share the VM, influxd, the lock file and the timers' schedule: "long"
(``--long`` symbols at 1h,1d,1w,1M: cycles, monitor, detect-gaps, train) and "1m" (the first
``--fast`` of those symbols at 1m: its cycle, monitor, detect-gaps), because one configuration
has one symbol list for all its timeframes.

The clock: libfaketime (LD_PRELOAD) with an offset from the real clock: the replay reads it from
FAKETIME_TIMESTAMP_FILE on every call (FAKETIME_NO_CACHE); each job gets the offset of its launch
as FAKETIME (``job_clock``), which is the same because the offset moves only while no job runs.
Simulated time runs at the real rate while any job runs; when none does, the driver moves the
offset forward to the next timer. A timer that fires while its unit still runs is skipped
(systemd does the same); jobs waiting on the flock count their wait in their wall time, as
TimeoutStartSec= does.

Preload (before the simulated day, same cgroup): ``init``, the InfluxDB retention/shard settings
of the profile, ``backfill`` of the full 1h/1d/1w/1M history and ``--days-1m`` of 1m, then one
warm-up ``cycle`` per instance. Output in ``--out``: jobs.csv (one row per job: wall, overrun,
peak RSS), minutes.csv (per simulated minute: cgroup memory usage and peak, anon/cache split, OOM
kills, influxd RSS and disk, freshness counts), summary.txt; soak_plot.py draws soak.png from
them. Prints figures and asserts nothing (tests/test_soak.py checks a short run).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    CLI,
    DATA,
    ROOT,
    du_bytes,
    header,
    loadavg,
    start_influxd_with,
    tempdir,
    wait_idle,
)
from soak_data import Universe, build
from soak_infra import Cgroup, faketime_env, query_influx, start_nginx, start_replay

from coinpredict.jobs.runner import cycle_lock
from coinpredict.local import atomic

MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

# InfluxDB profiles: keys of influxd's [data] section, and the shard duration of the 1m database.
PROFILES: dict[str, tuple[dict[str, str], str]] = {
    "default": ({}, "1d"),
    "tuned": (
        {
            "index-version": '"tsi1"',
            "cache-max-memory-size": "104857600",
            "cache-snapshot-memory-size": "8388608",
            "max-concurrent-compactions": "1",
        },
        "7d",
    ),
    "small": (
        {
            "index-version": '"tsi1"',
            "cache-max-memory-size": "104857600",
            "cache-snapshot-memory-size": "2097152",
            "cache-snapshot-write-cold-duration": '"1m0s"',
            "max-concurrent-compactions": "1",
        },
        "7d",
    ),
}
INFLUX_GOGC = {"small": "50"}  # GOGC of influxd: heap target = live heap x (1 + GOGC/100)


# --- the schedule (systemd/*.timer) --------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    name: str
    instance: str  # "long" | "1m" (which configuration), "probe" for status --json
    args: tuple[str, ...]
    period_s: int  # how often the timer fires (the budget of one run)
    lock_wait: int | None  # flock --wait seconds; None: the unit takes no flock
    timeout_s: int  # TimeoutStartSec=
    second: int  # second of the minute the timer fires at
    when: str  # which minutes: "all", "even", "hour", "day", "monday", "first", "gaps", "train"


def _fires(when: str, m: dt.datetime) -> bool:
    rules = {
        "all": True,
        "even": m.minute % 2 == 0,
        "hour": m.minute == 0,
        "day": m.hour == 0 and m.minute == 0,
        "monday": m.weekday() == 0 and m.hour == 0 and m.minute == 0,
        "first": m.day == 1 and m.hour == 0 and m.minute == 0,
        "gaps": m.hour == 0 and m.minute == 20,
        "train": m.weekday() == 0 and m.hour == 1 and m.minute == 0,
    }
    return rules[when]


def units(with_fast: bool) -> list[Unit]:
    week, month = 7 * 86400, 28 * 86400
    out = [
        Unit("cycle@1h", "long", ("cycle", "-t", "1h"), 3600, 600, 1800, 30, "hour"),
        Unit("cycle@1d", "long", ("cycle", "-t", "1d"), 86400, 600, 1800, 30, "day"),
        Unit("cycle@1w", "long", ("cycle", "-t", "1w"), week, 600, 1800, 30, "monday"),
        Unit("cycle@1M", "long", ("cycle", "-t", "1M"), month, 600, 1800, 30, "first"),
        Unit("monitor", "long", ("monitor",), 120, None, 90, 45, "even"),
        Unit("detect-gaps", "long", ("detect-gaps", "--refill"), 86400, None, 7200, 0, "gaps"),
        Unit("train", "long", ("train",), week, None, 10800, 0, "train"),
    ]
    if with_fast:
        out[:0] = [Unit("cycle@1m", "1m", ("cycle", "-t", "1m"), 60, 90, 300, 5, "all")]
        out += [
            Unit("monitor", "1m", ("monitor",), 120, None, 90, 45, "even"),
            Unit("detect-gaps", "1m", ("detect-gaps", "--refill"), 86400, None, 7200, 0, "gaps"),
        ]
    out += [
        Unit(f"status@{i}", "probe", ("status", "--json"), 60, None, 60, 55, "all")
        for i in ("long", "1m")
        if i == "long" or with_fast
    ]
    return out


def schedule(
    all_units: list[Unit], start_ms: int, end_ms: int, *, fast_end_ms: int, probe_every: int
) -> list[tuple[int, Unit]]:
    """Every timer event in [start, end); the 1m instance's only before ``fast_end_ms``, the
    status probes every ``probe_every`` minutes."""
    events = []
    for minute in range(start_ms - start_ms % MIN_MS, end_ms, MIN_MS):
        m = dt.datetime.fromtimestamp(minute / 1000, dt.UTC)
        for u in all_units:
            t = minute + u.second * 1000
            if not (start_ms <= t < end_ms and _fires(u.when, m)):
                continue
            if "1m" in (u.instance, u.name.partition("@")[2]) and t >= fast_end_ms:
                continue
            if u.instance == "probe" and (minute // MIN_MS) % probe_every:
                continue
            events.append((t, u))
    return sorted(events, key=lambda e: e[0])


# --- the clock -----------------------------------------------------------------------------------
class SimClock:
    """The offset file every faked process reads: simulated = real + offset."""

    def __init__(self, path: Path, start_ms: int) -> None:
        self.path = path
        self.offset_s = start_ms / 1000 - time.time()
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.offset_s:+.3f}\n")
        tmp.replace(self.path)

    def now_ms(self) -> int:
        return int((time.time() + self.offset_s) * 1000)

    def jump_to(self, ms: int) -> None:
        ahead = ms - self.now_ms()
        if ahead > 0:
            self.offset_s += ahead / 1000
            self._write()


def job_clock(env: dict[str, str], offset_s: float) -> dict[str, str]:
    """A job's environment with the clock's offset fixed at launch (``FAKETIME=+S``) instead of
    the offset file. The driver moves the offset only while no job runs, so a job needs no live
    updates; and libfaketime 0.9.10 rereading the file (``FAKETIME_NO_CACHE``) in two threads at
    once can hand one reader the real time (a race on its buffer, fixed upstream in
    wolfcw/libfaketime#547): in the day run of 2026-12-03 that made 6 of 24 hourly cycles
    forecast or ingest as of the real date for one series (docs/scaling.md). The replay keeps
    the file: it must follow the jumps."""
    out = {
        k: v for k, v in env.items() if k not in ("FAKETIME_TIMESTAMP_FILE", "FAKETIME_NO_CACHE")
    }
    out["FAKETIME"] = f"{offset_s:+.3f}"
    return out


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- jobs ----------------------------------------------------------------------------------------
JOB_FIELDS = [
    "phase", "unit", "instance", "fired", "started_late_s", "wall_s", "lock_wait_s", "cpu_s", "rc", "peak_rss_mb",
    "period_s", "over_period", "over_70pct", "skipped", "load", "error",
]  # fmt: skip


@dataclass
class Running:
    unit: Unit
    fired_ms: int
    late_s: float
    proc: subprocess.Popen
    t0: float
    files: Path  # prefix of .out/.err/.rss
    phase: str


@dataclass
class Soak:
    work: Path
    clock: SimClock
    cgroup: Cgroup
    envs: dict[str, dict[str, str]]
    lock: Path
    jobs: list[dict] = field(default_factory=list)
    minutes: dict[int, dict] = field(default_factory=dict)
    running: dict[tuple[str, str], Running] = field(default_factory=dict)
    influx_pid: int = 0
    influx_dir: Path = Path()
    nginx_port: int = 0
    influx: object = None
    seq: int = 0
    stopped: str = ""
    # called every ``checkpoint_s`` real seconds while the day runs (the outputs so far)
    checkpoint: Callable[[], None] | None = None
    checkpoint_s: float = 300.0

    def influx_dead(self) -> bool:
        try:
            os.kill(self.influx_pid, 0)
            dead = Path(f"/proc/{self.influx_pid}/stat").read_text().split(") ")[1][0] in "ZX"
        except (OSError, IndexError):
            dead = True
        if dead:
            self.stopped = f"stopped: influxd died at {iso(self.clock.now_ms())}"
        return dead

    # -- launching -------------------------------------------------------------------------------
    def command(self, unit: Unit, files: Path) -> list[str]:
        if unit.instance == "probe":
            return ["env", f"LD_PRELOAD={FAKETIME_LIB}", *CLI, *unit.args]
        lock = (
            self.lock.with_name(cycle_lock(unit.args[2])) if unit.args[0] == "cycle" else self.lock
        )
        flock = ["flock", "--wait", str(unit.lock_wait), str(lock)] if unit.lock_wait else []
        return [
            *self.cgroup.prefix(), *flock,
            "/usr/bin/time", "-q", "-f", "%e %M %U %S", "-o", f"{files}.rss",
            "env", f"LD_PRELOAD={FAKETIME_LIB}", *CLI, *unit.args,
        ]  # fmt: skip

    def launch(self, unit: Unit, fired_ms: int, phase: str = "soak") -> None:
        key = (unit.name, unit.instance)
        if unit.instance == "probe":
            self._sample_memory(fired_ms)
        if key in self.running:  # the unit is still active: systemd skips this tick
            self.jobs.append(self._row(unit, fired_ms, phase, skipped=True))
            if unit.instance == "probe":  # this minute's freshness is never read: said so
                self._not_read(fired_ms, unit, "status of the minute before still running")
            return
        self.seq += 1
        files = self.work / "jobs" / f"{self.seq:06d}"
        files.parent.mkdir(exist_ok=True)
        env = job_clock(
            self.envs[unit.name.split("@")[1] if unit.instance == "probe" else unit.instance],
            self.clock.offset_s,
        )
        with open(f"{files}.out", "w") as out, open(f"{files}.err", "w") as err:
            proc = subprocess.Popen(
                self.command(unit, files), env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        late = (self.clock.now_ms() - fired_ms) / 1000
        self.running[key] = Running(unit, fired_ms, late, proc, time.monotonic(), files, phase)

    def run_now(self, unit: Unit, phase: str) -> dict:
        """Run one job to completion (preload / warm-up) and return its row."""
        self.launch(unit, self.clock.now_ms(), phase)
        while self.running:
            self.reap()
            time.sleep(0.05)
        return self.jobs[-1]

    # -- reaping ---------------------------------------------------------------------------------
    def reap(self) -> None:
        for key, job in list(self.running.items()):
            wall = time.monotonic() - job.t0
            if job.proc.poll() is None:
                if wall > job.unit.timeout_s:  # TimeoutStartSec=: systemd kills the unit
                    os.killpg(job.proc.pid, signal.SIGKILL)
                continue
            del self.running[key]
            if job.unit.instance == "probe":
                self._read_status(job)
                continue
            self.jobs.append(self._finished(job, wall))

    def _finished(self, job: Running, wall: float) -> dict:
        rc = job.proc.returncode
        ok = rc == 0 or (job.unit.args[0] == "monitor" and rc in (1, 2))  # SuccessExitStatus=1 2
        try:
            own, kib, user, system = Path(f"{job.files}.rss").read_text().split()[-4:]
            run_s, rss, cpu = float(own), int(kib) / 1024, float(user) + float(system)
        except (OSError, ValueError):
            run_s = rss = cpu = float("nan")
        err = ""
        if not ok:
            lines = [
                ln
                for ln in Path(f"{job.files}.err").read_text(errors="replace").splitlines()
                if ln.strip()
            ]
            err = lines[-1][:200] if lines else f"exit {rc}"
        for suffix in (".out", ".err", ".rss"):
            Path(f"{job.files}{suffix}").unlink(missing_ok=True)
        row = self._row(job.unit, job.fired_ms, job.phase)
        row.update(
            started_late_s=f"{job.late_s:.2f}", wall_s=f"{wall:.2f}", rc=rc,
            lock_wait_s=f"{max(0.0, wall - run_s):.2f}", cpu_s=f"{cpu:.2f}",
            peak_rss_mb=f"{rss:.0f}", over_period=int(wall > job.unit.period_s),
            over_70pct=int(wall > 0.7 * job.unit.period_s), error=err,
        )  # fmt: skip
        return row

    def _row(self, unit: Unit, fired_ms: int, phase: str, *, skipped: bool = False) -> dict:
        row = dict.fromkeys(JOB_FIELDS, "")
        row.update(
            phase=phase, unit=unit.name, instance=unit.instance, fired=iso(fired_ms),
            period_s=unit.period_s, skipped=int(skipped), load=loadavg().split()[0],
        )  # fmt: skip
        return row

    # -- per-minute samples ----------------------------------------------------------------------
    def _sample_memory(self, fired_ms: int) -> None:
        minute = fired_ms - fired_ms % MIN_MS
        if minute in self.minutes:
            return
        row: dict = {"minute": iso(minute), "load": loadavg().split()[0]}
        row.update(self.cgroup.sample())
        row["influxd_rss_mb"] = f"{_rss_mb(self.influx_pid):.0f}"
        row["influxd_disk_mb"] = f"{du_bytes(self.influx_dir) / 2**20:.1f}"
        row["nginx_ok"] = int(_http_ok(self.nginx_port, "/manifest.json"))
        self.minutes[minute] = row

    def _probe_row(self, fired_ms: int, unit: Unit) -> tuple[dict, str]:
        """The minute's row and the probe's instance tag ("long" or "1m")."""
        minute = fired_ms - fired_ms % MIN_MS
        return self.minutes.setdefault(minute, {"minute": iso(minute)}), unit.name.split("@")[1]

    def _not_read(self, fired_ms: int, unit: Unit, why: str) -> None:
        row, tag = self._probe_row(fired_ms, unit)
        row[f"{tag}_series"], row[f"{tag}_not_fresh"] = 0, f"not read: {why}"

    def _read_status(self, job: Running) -> None:
        row, tag = self._probe_row(job.fired_ms, job.unit)
        try:
            doc = json.loads(Path(f"{job.files}.out").read_text())
        except (OSError, ValueError):
            self._not_read(job.fired_ms, job.unit, "status failed")
            return
        finally:
            for suffix in (".out", ".err"):
                Path(f"{job.files}{suffix}").unlink(missing_ok=True)
        series = doc.get("series", [])
        bad = []
        for s in series:
            verdicts = [("data", s["data"])]
            if s.get("prediction"):
                verdicts.append(("prediction", s["prediction"]))
            bad += [
                f"{s['symbol']} {s['timeframe']} {k}={v['freshness']}"
                for k, v in verdicts
                if v["freshness"] != "fresh"
            ]
        row[f"{tag}_last_candle"] = max(
            (s["data"].get("last_candle") or "" for s in series), default=""
        )
        row[f"{tag}_series"] = len(series)
        row[f"{tag}_not_fresh"] = len(bad)
        row[f"{tag}_stale_examples"] = "; ".join(bad[:3])

    # -- the loop --------------------------------------------------------------------------------
    def run(self, events: list[tuple[int, Unit]], budget_s: float) -> bool:
        """Run the events on the simulated clock; False when the real-time budget ran out."""
        deadline = time.monotonic() + budget_s
        saved = time.monotonic()
        for fired_ms, unit in events:
            if self.checkpoint is not None and time.monotonic() - saved >= self.checkpoint_s:
                self.checkpoint()
                saved = time.monotonic()
            while True:
                self.reap()
                if self.influx_dead():
                    return False
                if self.clock.now_ms() >= fired_ms:
                    break
                if not self.running:
                    self.clock.jump_to(fired_ms)
                    break
                time.sleep(0.05)
            if time.monotonic() > deadline:
                self.stopped = "stopped early: real-time budget"
                break
            self.launch(unit, fired_ms)
        while self.running:  # the jobs still running finish (train may run for minutes)
            self.reap()
            time.sleep(0.05)
        return not self.stopped


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _http_ok(port: int, path: str) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False


# --- output --------------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Written atomically (the product's own writer): a reader or a killed run never sees half
    a file."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, text.getvalue())


def write_outputs(soak: Soak, args: argparse.Namespace, finished: bool, note: str = "") -> str:
    """jobs.csv, minutes.csv and summary.txt as they stand -> the summary's text. Written at the
    end, and every ``--checkpoint-min`` while the run goes on (``note`` says how far it got),
    so that a run stopped from outside (a session ending, a kill) leaves its figures so far."""
    write_csv(args.out / "jobs.csv", soak.jobs, JOB_FIELDS)
    write_csv(
        args.out / "minutes.csv", [soak.minutes[k] for k in sorted(soak.minutes)], MINUTE_FIELDS
    )
    text = summarize(soak, args, finished, note)
    atomic.write_text(args.out / "summary.txt", text + "\n")
    return text


MINUTE_FIELDS = [
    "minute", "load", "cpu_throttled_s", "cg_usage_mb", "cg_peak_mb", "cg_anon_mb", "cg_cache_mb", "oom_kills",
    "influxd_rss_mb", "influxd_disk_mb", "nginx_ok", "long_series", "long_not_fresh",
    "1m_series", "1m_not_fresh", "long_last_candle", "1m_last_candle", "long_stale_examples", "1m_stale_examples",
]  # fmt: skip


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summarize(soak: Soak, args: argparse.Namespace, finished: bool, note: str = "") -> str:
    jobs = [j for j in soak.jobs if j["phase"] == "soak"]
    stopped = note or soak.stopped
    lines = [
        f"soak: {args.long} symbols at 1h/1d/1w/1M, {args.fast} at 1m, {args.days_1m} d of 1m, "
        f"influx profile {args.influx}, cgroup {soak.cgroup.describe()}",
        f"simulated {iso(args.start_ms)} .. {iso(args.end_ms)}"
        + (
            ""
            if finished
            else f" ({stopped}; last event fired {max((j['fired'] for j in jobs), default='-')})"
        ),
    ]
    lines.append(
        "| unit | instance | runs | skipped | failed | wall p50 | p95 | max | over period | over 70 % | peak RSS MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(j["unit"], j["instance"]) for j in jobs})
    for unit, inst in keys:
        mine = [j for j in jobs if (j["unit"], j["instance"]) == (unit, inst)]
        ran = [j for j in mine if not j["skipped"]]
        walls = [float(j["wall_s"]) for j in ran]
        rss = [float(j["peak_rss_mb"]) for j in ran if j["peak_rss_mb"] not in ("", "nan")]
        lines.append(
            f"| {unit} | {inst} | {len(ran)} | {len(mine) - len(ran)} | "
            f"{sum(1 for j in ran if j['error'])} | {_p(walls, 0.5):.1f} | {_p(walls, 0.95):.1f} | "
            f"{max(walls, default=float('nan')):.1f} | {sum(int(j['over_period']) for j in ran)} | "
            f"{sum(int(j['over_70pct']) for j in ran)} | {max(rss, default=float('nan')):.0f} |"
        )
    mins = [soak.minutes[k] for k in sorted(soak.minutes)]
    peaks = [float(m["cg_peak_mb"]) for m in mins if m.get("cg_peak_mb")]
    counts = [[m.get(f"{tag}_not_fresh") or 0 for tag in ("long", "1m")] for m in mins]
    not_read = [c for c in counts if any(not str(n).isdigit() for n in c)]
    not_fresh = [c for c in counts if c not in not_read and any(int(n) for n in c)]
    lines += [
        f"cgroup memory peak {max(peaks, default=float('nan')):.0f} MB of {args.memory} MB; "
        f"OOM kills {mins[-1].get('oom_kills', '?') if mins else '?'}",
        f"influxd RSS {mins[-1].get('influxd_rss_mb', '?') if mins else '?'} MB at the end, disk {mins[-1].get('influxd_disk_mb', '?') if mins else '?'} MB",
        f"minutes with a series not fresh: {len(not_fresh)} of {len(mins)}; minutes whose "
        f"freshness was not read (status failed, or still running from the minute before): "
        f"{len(not_read)}",
        f"load average at the end: {loadavg()}",
    ]
    return "\n".join(lines)


# --- setup ---------------------------------------------------------------------------------------
def instance_env(
    base: dict[str, str], work: Path, name: str, symbols: str, tfs: str
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("COINPREDICT_")}
    env.update(
        {k: v for k, v in base.items() if k.startswith("COINPREDICT_")},
        COINPREDICT_SYMBOLS=symbols, COINPREDICT_TIMEFRAMES=tfs,
        COINPREDICT_STATE_DIR=str(work / f"state-{name}"),
        COINPREDICT_EXPORT_DIR=str(work / ("www" if name == "long" else f"www-{name}")),
        COINPREDICT_METRICS_DIR=str(work / f"state-{name}" / "metrics"),
    )  # fmt: skip
    return env


def share_cycle_lock(lock: Path, envs: dict[str, dict[str, str]]) -> None:
    """The cycle locks of both instances, as on the VM (one state dir): the units' flock(1)
    takes ``lock`` (1h/1d/1w/1M) or its 1m sibling (``runner.cycle_lock``), and detect-gaps
    --refill takes STATE_DIR/<the same name> itself; each instance's files are hard links to
    those two (a flock is on the file, so the names of one lock are one lock)."""
    for name in (cycle_lock("1h"), cycle_lock("1m")):
        lock.with_name(name).touch()
        for env in envs.values():
            state = Path(env["COINPREDICT_STATE_DIR"])
            state.mkdir(parents=True, exist_ok=True)
            os.link(lock.with_name(name), state / name)


def preload(soak: Soak, uni: Universe, args: argparse.Namespace, shard_1m: str) -> None:
    def once(inst: str, *cmd: str) -> None:
        row = soak.run_now(Unit(cmd[0], inst, cmd, 0, None, 10**6, 0, "all"), "preload")
        print(
            f"  preload {inst:4} {' '.join(cmd):40} {row['wall_s']:>8} s  rc {row['rc']}  peak RSS {row['peak_rss_mb']} MB {row['error']}",
            flush=True,
        )

    once("long", "init")
    base = soak.envs["long"]
    url = base["COINPREDICT_INFLUX_URL"]
    db1m = base["COINPREDICT_INFLUX_DB_1M"]
    query_influx(url, f'ALTER RETENTION POLICY "rolling" ON "{db1m}" SHARD DURATION {shard_1m}')
    once("long", "backfill", "-t", "1h", "-t", "1d", "-t", "1w", "-t", "1M")
    if uni.fast:
        once("1m", "backfill", "-t", "1m")
    waited = wait_idle(soak.influx_pid, max_s=120)
    print(
        f"  influxd idle after {waited:.0f} s; RSS {_rss_mb(soak.influx_pid):.0f} MB (peak "
        f"{_rss_mb(soak.influx_pid, 'VmHWM'):.0f} MB), disk {du_bytes(soak.influx_dir) / 2**20:.0f} MB",
        flush=True,
    )
    if args.restart_influxd:
        time.sleep(60)
        print(
            f"  influxd RSS 60 s later {_rss_mb(soak.influx_pid):.0f} MB; restarting it (deployment step after the first backfill)",
            flush=True,
        )
        soak.influx_pid = restart(soak.influx)
        print(f"  influxd RSS after restart {_rss_mb(soak.influx_pid):.0f} MB", flush=True)
    soak.clock.jump_to(args.start_ms - 90_000)
    once("long", "cycle", "-t", "1h", "-t", "1d", "-t", "1w", "-t", "1M")
    if uni.fast:
        once("1m", "cycle", "-t", "1m")


def restart(influx: object) -> int:
    """Stop influxd and start it again on the same config, port and cgroup; return its pid."""
    from coinpredict.replay.influxd import spawn

    influx.stop()  # type: ignore[attr-defined]
    influx.process = spawn(influx.workdir, influx.port, influx.prefix).process  # type: ignore[attr-defined]
    time.sleep(5)
    return int(influx.process.pid)  # type: ignore[attr-defined]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", type=int, default=50, help="symbols at 1h/1d/1w/1M")
    ap.add_argument("--fast", type=int, default=10, help="of those, symbols at 1m (0: none)")
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    ap.add_argument("--start", default="2027-01-31T23:40:00", help="simulated start (UTC)")
    ap.add_argument("--days-1m", type=int, default=180, help="days of 1m kept and preloaded")
    ap.add_argument("--cpus", type=float, default=1.0, help="CPU quota in cores")
    ap.add_argument(
        "--preload-cpus", type=float, default=0, help="CPU quota during the preload (0: --cpus)"
    )
    ap.add_argument("--memory", type=int, default=1024, help="memory limit in MiB")
    ap.add_argument("--influx", choices=sorted(PROFILES), default="small")
    ap.add_argument(
        "--fast-minutes",
        type=float,
        default=0,
        help="run the 1m instance only for the first N simulated minutes (0: all along)",
    )
    ap.add_argument(
        "--probe-every",
        type=int,
        default=1,
        help="status probe and memory sample every N simulated minutes",
    )
    ap.add_argument(
        "--restart-influxd", action="store_true", help="restart influxd once after the preload"
    )
    ap.add_argument(
        "--budget-min", type=float, default=0, help="stop after this many real minutes (0: never)"
    )
    ap.add_argument(
        "--checkpoint-min",
        type=float,
        default=5,
        help="write the outputs so far every N real minutes while the run goes on",
    )
    ap.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the work dir (state, InfluxDB data, logs) to read after the run",
    )
    ap.add_argument("--data", type=Path, default=DATA, help="source candle files")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "soak")
    args = ap.parse_args(argv)
    if not 0 <= args.fast <= args.long:  # the 1m symbols are the first --fast of the long ones
        ap.error(f"--fast {args.fast} must be between 0 and --long {args.long}")
    start = dt.datetime.fromisoformat(args.start.rstrip("Z")).replace(tzinfo=dt.UTC)
    args.start_ms = int(start.timestamp() * 1000)
    args.end_ms = args.start_ms + int(args.hours * HOUR_MS)
    return args


@contextlib.contextmanager
def services(work: Path, args: argparse.Namespace, cgroup: Cgroup) -> Iterator[tuple]:
    overrides, _shard = PROFILES[args.influx]
    gogc = INFLUX_GOGC.get(args.influx)
    launcher = [*cgroup.prefix(), *(["env", f"GOGC={gogc}"] if gogc else [])]
    influx = start_influxd_with(work / "influxd", overrides, launcher)
    influx.prefix = launcher
    clock = SimClock(work / "faketime", args.start_ms - 3 * HOUR_MS)
    fenv = faketime_env(work / "faketime", ROOT / "tests" / "faketime_site")
    replay = nginx = None
    try:
        replay, url = start_replay(CLI, work / "data", fenv, FAKETIME_LIB, work / "replay.log")
        nginx, port = start_nginx(work / "nginx", work / "www", cgroup.prefix())
        yield influx, clock, fenv, url, port
    finally:
        for proc in (nginx, replay):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        influx.stop()


def _terminate(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # run the finally blocks: outputs written, children and cgroup gone


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    args = parse(argv)
    header("soak: the small VM, every timer, one cgroup")
    print(f"# source data: {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempdir("cpsoak-", keep=args.keep_work) as work,
        Cgroup.create(
            f"coinpredict-soak-{os.getpid()}", args.memory, args.preload_cpus or args.cpus
        ) as cgroup,
    ):
        t0 = time.monotonic()
        uni = build(args.data, work / "data", long=args.long, fast=args.fast, days=args.days_1m,
                    start_ms=args.start_ms - 3 * HOUR_MS, end_ms=args.end_ms + HOUR_MS)  # fmt: skip
        print(
            f"  data: {len(uni.long)} + {len(uni.fast)} symbols written in {time.monotonic() - t0:.0f} s; cgroup {cgroup.describe()}",
            flush=True,
        )
        (work / "www").mkdir()
        with services(work, args, cgroup) as (influx, clock, fenv, url, port):
            base = {**os.environ, **fenv, "COINPREDICT_INFLUX_URL": influx.url, "COINPREDICT_EXCHANGE_URL": url,
                    "COINPREDICT_INFLUX_DB": "coinpredict", "COINPREDICT_INFLUX_DB_1M": "coinpredict_1m",
                    "COINPREDICT_CONFIG": "", "COINPREDICT_1M_WINDOW": f"{args.days_1m}d",
                    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
            envs = {
                "long": instance_env(base, work, "long", uni.symbols(uni.long), "1h,1d,1w,1M"),
                "1m": instance_env(base, work, "1m", uni.symbols(uni.fast), "1m"),
            }
            share_cycle_lock(work / ".lock-cycle", envs)
            soak = Soak(work, clock, cgroup, envs, work / ".lock-cycle", influx_pid=influx.process.pid,
                        influx_dir=work / "influxd", nginx_port=port, influx=influx)  # fmt: skip
            preload(soak, uni, args, PROFILES[args.influx][1])
            cgroup.set_cpus(args.cpus)
            cgroup.reset_peak()
            fast_end = (
                args.start_ms + int(args.fast_minutes * MIN_MS)
                if args.fast_minutes
                else args.end_ms
            )
            events = schedule(units(bool(uni.fast)), args.start_ms, args.end_ms,
                              fast_end_ms=fast_end, probe_every=args.probe_every)  # fmt: skip
            print(f"  soak: {len(events)} timer events from {iso(args.start_ms)}", flush=True)
            soak.checkpoint_s = args.checkpoint_min * 60
            soak.checkpoint = lambda: write_outputs(
                soak, args, False, f"in progress at {iso(clock.now_ms())}"
            )
            finished = False
            try:
                finished = soak.run(
                    events, args.budget_min * 60 if args.budget_min else float("inf")
                )
            except KeyboardInterrupt:
                soak.stopped = f"stopped: interrupted at {iso(clock.now_ms())}"
                raise
            finally:
                print(write_outputs(soak, args, finished))
    print(
        f"  wrote {args.out}/jobs.csv, minutes.csv, summary.txt (plot: make soak-plot OUT={args.out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
