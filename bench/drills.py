"""Reliability drills: kills aimed at the named crash points, real faults, every result asserted.

    .venv/bin/python bench/drills.py [--seed N] [--only DRILL,...] [--short] [--points P,...]
                                     [--data DIR] [--json PATH] [--plant-defect NAME]

Every drill runs the real CLI as a child process against a private ``influxd`` 1.6 and the replay
exchange, then checks its invariants (docs/reliability.md lists them with the state each crash
point leaves behind):

  points      SIGKILL at every named crash point (coinpredict.base.crashpoints.POINTS): the
              CLI runs with COINPREDICT_CRASH_AT=POINT[:DETAIL]@N, stops itself there, is killed,
              checked, rerun to completion and checked again. The N-th pass is drawn at random
              from the passes an uninterrupted run makes (``--short``: the first).
  random      SIGKILL at seeded random instants of backfill, ingest, export, cycle and train;
              each kill records its phase (the last crash point the run had passed).
  influx      influxd stopped (SIGTERM) and restarted while ingest is paused between two
              batches (and, without --short, at a random instant of the run).
  diskfull    the export dir on a full tmpfs (ENOSPC at write) and on an ext4 whose loop file
              lives on a full tmpfs (ENOSPC at fsync).
  unwritable  the export dir really unwritable: for ``nobody`` (the CLI run through setpriv,
              after a control run that succeeds) and immutable (chattr +i) for root.
  faults      the replay injecting each fault kind at 20% (and all mixed).
  skew        the exchange clock 5 minutes ahead of / behind ours around an hour boundary.
  hostile     hostile symbols on the command line and in the environment.

Exit status: 0 when every selected drill ran and every invariant held and, when ``points`` ran,
every named point got at least one kill; 1 otherwise (a drill whose setup failed names the
missing precondition). ``--plant-defect`` sets COINPREDICT_TEST_DEFECT for the CLI runs, so that
a test can watch the drills catch a planted defect. ``make drills`` runs the long campaign,
``make test`` the ``--short`` set (tests/test_drills.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import common
import faultfs as fs
from common import bits, env_for, faketime_prefix, header, influxd, read_rows, run_cli, table
from faultfs import Missing

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.crashpoints import CRASH_AT, CRASH_LOG, DEFECTS, POINTS, TEST_DEFECT
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
from coinpredict.local.state import load_ingest
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage

H = 3_600_000
TF = TIMEFRAMES["1h"]
DRILLS = ("points", "random", "influx", "diskfull", "unwritable", "faults", "skew", "hostile")

#: What every check is called in the summary (docs/reliability.md uses the same words).
INVARIANTS = {
    "ran": "the drill could run (its precondition held)",
    "stopped": "the run reached the aimed crash point",
    "exact": "every stored candle is bitwise the source's",
    "duplicates": "no candle stored twice",
    "cursor": "no cursor ahead of the stored data",
    "lost": "no closed candle missing after the rerun",
    "open": "no open candle stored",
    "parse": "every published file parses",
    "manifest": "the manifest names only files that exist",
    "intact": "a file the run did not replace is unchanged",
    "champion": "the champion loads and forecasts",
    "windows": "every cached model window equals InfluxDB",
    "rerun": "the rerun exits 0",
    "reported": "the failure exits 1 with its reason on one line",
    "resumed": "a run that finds InfluxDB back completes",
    "untouched": "nothing written",
    "requests": "klines requests <= 2 x pages + 10",
}


@dataclass
class Result:
    drill: str
    trials: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0  # stored rows that differ from the source (bits) or are not in it
    torn: int = 0
    reported: list[str] = field(default_factory=list)  # "exit N: message" said by the CLI
    problems: list[str] = field(default_factory=list)  # broken invariants, failed setups
    kills: Counter[str] = field(default_factory=Counter)  # crash point or phase -> kills
    checked: Counter[str] = field(default_factory=Counter)  # invariant -> times checked
    broken: Counter[str] = field(default_factory=Counter)  # invariant -> times broken

    def check(self, invariant: str, ok: bool, detail: str = "") -> bool:
        assert invariant in INVARIANTS, invariant
        self.checked[invariant] += 1
        if not ok:
            self.broken[invariant] += 1
            self.problems.append(f"{invariant}: {detail}" if detail else invariant)
        return ok

    def row(self) -> list:
        said = "; ".join(sorted(set(self.reported)))[:110] or "-"
        verdict = "ok" if not self.problems else "FAIL: " + "; ".join(self.problems)[:160]
        kills = sum(self.kills.values())
        counts = [self.trials, kills, self.lost, self.duplicated, self.wrong, self.torn]
        return [self.drill, *counts, said, verdict]


@contextlib.contextmanager
def drill(results: list[Result], name: str) -> Iterator[Result]:
    """A drill's result; a missing precondition is recorded as a failure of the drill."""
    res = Result(name)
    try:
        yield res
    except Missing as exc:
        res.check("ran", False, f"precondition missing: {exc}")
    else:
        res.check("ran", True)
    results.append(res)


# --- running the CLI ----------------------------------------------------------------------------
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """Child side: SIGKILL when the drill dies (a stopped child would otherwise stay forever)."""
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(args: list[str], env: dict[str, str], work: Path) -> tuple[subprocess.Popen, Path]:
    work.mkdir(parents=True, exist_ok=True)
    err = work / f".err-{time.monotonic_ns()}"
    with err.open("w") as err_f:
        proc = subprocess.Popen(
            [*common.CLI, *args],
            env=common._child_env(env),
            stdout=subprocess.DEVNULL,
            stderr=err_f,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    return proc, err


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _log_lines(log: Path) -> list[str]:
    try:
        return log.read_text().splitlines()
    except FileNotFoundError:
        return []


@dataclass
class Stopped:
    """A CLI run stopped at a crash point (``where``), or why it was not."""

    proc: subprocess.Popen
    log: Path
    err: Path
    where: str | None
    why: str = ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def resume(self, timeout_s: float = 180) -> tuple[int, str]:
        """SIGCONT: the run goes on from the point -> (exit code, stderr)."""
        os.kill(self.proc.pid, signal.SIGCONT)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = -9
        return rc, self.err.read_text(errors="replace")


def run_to_point(
    args: list[str], env: dict[str, str], work: Path, spec: str, timeout_s: float = 180
) -> Stopped:
    """Start the CLI aimed at ``spec`` (POINT[:DETAIL][@N]) and wait until it stopped there."""
    log = work / f".crash-{time.monotonic_ns()}"
    proc, err = spawn(args, {**env, CRASH_AT: spec, CRASH_LOG: str(log)}, work)
    deadline = time.monotonic() + timeout_s
    while True:
        stop = [ln for ln in _log_lines(log) if ln.startswith("stop ")]
        if stop:
            while _state(proc.pid) not in ("T", "t", "?") and time.monotonic() < deadline:
                time.sleep(0.002)  # the line is written just before SIGSTOP
            return Stopped(proc, log, err, stop[0][5:].rsplit(" ", 1)[0])
        if proc.poll() is not None:
            last = err.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            why = f"{' '.join(args)} exited {proc.returncode} before {spec}: {last[0][:120]}"
            return Stopped(proc, log, err, None, why)
        if time.monotonic() > deadline:
            stopped = Stopped(proc, log, err, None, f"{' '.join(args)}: {spec} not reached")
            stopped.kill()
            return stopped
        time.sleep(0.005)


def kill_after(
    args: list[str], env: dict[str, str], work: Path, delay: float
) -> tuple[str | None, Path]:
    """SIGKILL the CLI ``delay`` s after its start -> (its phase, None when it finished first;
    its crash log)."""
    log = work / f".crash-{time.monotonic_ns()}"
    proc, _err = spawn(args, {**env, CRASH_LOG: str(log)}, work)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is not None:
        return None, log
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    passed = [ln.split()[1] for ln in _log_lines(log) if ln.startswith("pass ")]
    return (f"after {passed[-1]}" if passed else "startup (no point passed yet)"), log


def passes(args: list[str], env: dict[str, str], work: Path) -> tuple[Counter[str], float, int]:
    """An uninterrupted run: (passes per POINT and POINT:DETAIL, seconds, exit code)."""
    log = work / f".crash-{time.monotonic_ns()}"
    run = run_cli(args, {**env, CRASH_LOG: str(log)}, work=work)
    seen: Counter[str] = Counter()
    for ln in _log_lines(log):
        if ln.startswith("pass "):
            parts = ln.split()
            seen[parts[1]] += 1
            if len(parts) > 2:
                seen[f"{parts[1]}:{parts[2]}"] += 1
    return seen, run.wall_s, run.rc


# --- the world: influxd, the replay, settings ---------------------------------------------------
@dataclass
class World:
    work: Path
    influx_url: str
    exchange_url: str
    sources: dict[tuple[str, str], dict[int, tuple]]  # (BASE, tf) -> {ts: bits}
    defect: str | None = None

    def env(self, name: str, symbols: str, timeframes: str, **extra: str) -> dict[str, str]:
        env = env_for(
            self.influx_url,
            self.work / name,
            exchange_url=self.exchange_url,
            symbols=symbols,
            timeframes=timeframes,
            db=name,
            **extra,
        )
        if self.defect:
            env[TEST_DEFECT] = self.defect
        return env


def served_sources(server) -> dict[tuple[str, str], dict[int, tuple]]:  # noqa: ANN001
    """What the replay serves, shifted: (BASE, tf) -> {open time: bits of the row}."""
    out = {}
    for s in server.data.series.values():
        rows = zip(s.ts, s.rows, strict=True)
        out[(s.base, s.tf.code)] = {t: bits((t, *map(float, r))) for t, r in rows}
    return out


def replay_copy(data: Path, work: Path, names: list[str]) -> Path:
    d = work / "replay"
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (data / name).exists():
            raise Missing(f"{data / name} not found")
        shutil.copy(data / name, d / name)
    return d


def reset(settings, http: InfluxHTTP) -> None:  # noqa: ANN001
    """A fresh start: drop the candle databases, remove the state and export dirs, init."""
    for db in (settings.influx_db, settings.influx_db_1m):
        http.query(f'DROP DATABASE "{db}"', write=True)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    shutil.rmtree(settings.export_dir, ignore_errors=True)
    init_storage(settings, http)


def setuprun(args: list[str], env: dict[str, str], work: Path) -> None:
    r = run_cli(args, env, work=work)
    if r.rc != 0:
        raise Missing(f"setup `coinpredict {' '.join(args)}` exit {r.rc}: {r.last_err_line()}")


# --- checks -------------------------------------------------------------------------------------
def series_of(settings) -> list[Series]:  # noqa: ANN001
    return [Series("binance", sym, tf) for sym in settings.symbols for tf in settings.timeframes]


def check_candles(res: Result, world: World, settings, store: CandleStore) -> None:  # noqa: ANN001
    """After a kill: what is stored is exact, once, and no cursor is ahead of it."""
    for x in series_of(settings):
        src = world.sources[(x.symbol.split("/")[0], x.timeframe.code)]
        got = store.read(x).rows()
        stamps = [r[0] for r in got]
        dup = len(stamps) - len(set(stamps))
        wrong = sum(1 for r in got if src.get(r[0]) != bits(r))
        res.duplicated += dup
        res.wrong += wrong
        res.check("duplicates", dup == 0, f"{x}: {dup} stored twice")
        res.check("exact", wrong == 0, f"{x}: {wrong} rows differ from the source")
        cursor = load_ingest(settings.state_dir, x).cursor
        ahead = cursor is not None and (not stamps or cursor > stamps[-1])
        newest = iso(stamps[-1]) if stamps else "nothing"
        res.check("cursor", not ahead, f"{x}: cursor {iso(cursor or 0)} ahead of {newest}")


def check_complete(res: Result, world: World, settings, store: CandleStore, t0: int) -> None:  # noqa: ANN001
    """After the rerun (started at ``t0``): exact, and every candle closed at t0 is stored."""
    check_candles(res, world, settings, store)
    now = SystemClock().now_ms()
    for x in series_of(settings):
        src = world.sources[(x.symbol.split("/")[0], x.timeframe.code)]
        have = {r[0] for r in store.read(x).rows()}
        lost = sum(1 for t in src if x.timeframe.is_closed(t, t0) and t not in have)
        res.lost += lost
        res.check("lost", lost == 0, f"{x}: {lost} closed candles missing")
        still_open = [t for t in have if not x.timeframe.is_closed(t, now)]
        res.check("open", not still_open, f"{x}: open candle {iso(min(still_open or [0]))}")


def check_files(res: Result, directory: Path) -> None:
    """Every published file parses and the manifest names only files that exist."""
    if not directory.is_dir():
        return
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or not p.name.endswith(".json"):
            continue  # dot files are temp files: nginx never serves them
        try:
            json.loads(p.read_bytes())
        except (ValueError, OSError) as exc:
            res.torn += 1
            res.check("parse", False, f"{p.name}: {exc}")
            continue
        res.check("parse", True)
    manifest = directory / "manifest.json"
    if manifest.exists():
        with contextlib.suppress(ValueError):
            named = [a["file"] for a in json.loads(manifest.read_bytes())["artifacts"]]
            gone = [n for n in named if not (directory / n).exists()]
            res.check("manifest", not gone, f"manifest names missing files {gone}")


def check_windows(res: Result, settings, store: CandleStore) -> None:  # noqa: ANN001
    """Every cached model window holds exactly InfluxDB's candles over its range."""
    from coinpredict.serving.windows import _load, window_path

    for x in series_of(settings):
        cached = _load(window_path(settings.state_dir, x))
        if cached is None:
            continue
        ts = cached[0]["timestamp"]
        stored = store.read(x, int(ts[0]), int(ts[-1]))
        same = [bits(r) for r in cached[0].rows()] == [bits(r) for r in stored.rows()]
        res.check("windows", same, f"{x}: cached model window differs from InfluxDB")


def check_champion(res: Result, settings, store: CandleStore) -> str | None:  # noqa: ANN001
    """The champion of every non-1m series loads and forecasts -> the first one's version."""
    from coinpredict.forecast.registry import forecast_for_series
    from coinpredict.serving.predict import models_dir

    first = None
    for x in series_of(settings):
        horizon = settings.policy(x.timeframe).horizon
        try:
            fc = forecast_for_series(
                models_dir(settings), x.symbol, x.timeframe, store.read(x), horizon
            )
        except Exception as exc:  # noqa: BLE001 - whatever stops the champion is the finding
            res.check("champion", False, f"{x}: {type(exc).__name__}: {exc}")
            continue
        res.check("champion", len(fc.close) == horizon, f"{x}: {len(fc.close)} steps")
        first = first or fc.model_version
    return first


def rerun(res: Result, args: list[str], env: dict[str, str], work: Path) -> None:
    r = run_cli(args, env, work=work)
    res.check("rerun", r.rc == 0, f"{' '.join(args)} exit {r.rc}: {r.last_err_line()}")


# --- 1. kills at named crash points (and at random instants) ------------------------------------
@dataclass(frozen=True)
class Aim:
    scenario: str  # ingest | cycle | export | train
    point: str  # a name in POINTS
    detail: str | None = None  # only the passes with this detail (e.g. a file name)

    @property
    def target(self) -> str:
        return self.point + (f":{self.detail}" if self.detail else "")


AIMS = (
    Aim("ingest", "ingest.batch_stored"),
    Aim("ingest", "atomic.before_rename", "BTC_USDT_1h.json"),  # the cursor file
    Aim("cycle", "cycle.ingest_done"),
    Aim("cycle", "cycle.before_export"),
    Aim("export", "export.file_replaced"),
    Aim("export", "atomic.before_rename", "manifest.json"),
    Aim("train", "registry.replace"),
    Aim("train", "atomic.before_rename", "registry.json"),
)


class Scenario:
    """One command on its own databases: ``prepare`` once, ``start`` before every trial, the
    kill, ``after_kill`` checks, the rerun, ``after_rerun`` checks."""

    command: list[str]
    symbols = "BTC/USDT,ETH/USDT"
    timeframes = "1h,1d"

    def __init__(self, world: World, name: str, short: bool) -> None:
        self.world = world
        if short:
            self.symbols = self.symbols.split(",")[0]
        self.env = world.env(name, self.symbols, self.timeframes)
        self.settings = common.settings_for(self.env)
        self.work = world.work / name
        self.http = InfluxHTTP(world.influx_url)
        self.store = CandleStore(
            self.http, db=self.settings.influx_db, db_1m=self.settings.influx_db_1m
        )

    def prepare(self) -> None:
        init_storage(self.settings, self.http)

    def start(self) -> None:
        reset(self.settings, self.http)

    def after_kill(self, res: Result, log: Path) -> None:
        check_candles(res, self.world, self.settings, self.store)

    def after_rerun(self, res: Result, t0: int) -> None:
        check_complete(res, self.world, self.settings, self.store, t0)

    def close(self) -> None:
        self.http.close()


class IngestScenario(Scenario):
    command = ["ingest"]


class BackfillScenario(Scenario):
    command = ["backfill"]
    timeframes = "1h"


class CycleScenario(Scenario):
    command = ["cycle"]

    def after_kill(self, res: Result, log: Path) -> None:
        super().after_kill(res, log)
        check_files(res, self.settings.export_dir)
        check_windows(res, self.settings, self.store)

    def after_rerun(self, res: Result, t0: int) -> None:
        super().after_rerun(res, t0)
        check_files(res, self.settings.export_dir)
        check_windows(res, self.settings, self.store)
        check_champion(res, self.settings, self.store)


class ExportScenario(Scenario):
    """Forecasts made once; every trial re-exports everything (``--force``) over the last
    export. A file the killed run did not replace must be byte for byte the old one."""

    command = ["export", "--force"]

    def prepare(self) -> None:
        super().start()
        for args in (["backfill"], ["predict"], ["export"]):
            setuprun(args, self.env, self.work)

    def start(self) -> None:
        d = self.settings.export_dir
        self.before = {p.name: p.read_bytes() for p in d.iterdir() if not p.name.startswith(".")}

    def after_kill(self, res: Result, log: Path) -> None:
        check_files(res, self.settings.export_dir)
        d = self.settings.export_dir
        maybe_new = _maybe_renamed(log)
        for name, old in self.before.items():
            if name not in maybe_new:
                same = (d / name).read_bytes() == old
                res.check("intact", same, f"{name} changed though its rename was not reached")

    def after_rerun(self, res: Result, t0: int) -> None:
        check_files(res, self.settings.export_dir)


class TrainScenario(Scenario):
    """1d candles stored once, a champion promoted once; every trial trains and promotes
    again (the gate margin -5 lets any scored shadow through)."""

    command = ["train", "--promote", "--margin", "-5"]
    timeframes = "1d"

    def prepare(self) -> None:
        super().start()
        setuprun(["backfill"], self.env, self.work)
        setuprun(self.command, self.env, self.work)

    def start(self) -> None:
        pass

    def after_kill(self, res: Result, log: Path) -> None:
        check_champion(res, self.settings, self.store)

    def after_rerun(self, res: Result, t0: int) -> None:
        check_champion(res, self.settings, self.store)
        ml = run_cli(["models", "list"], self.env, work=self.work)
        res.check("rerun", ml.rc == 0, f"models list exit {ml.rc}: {ml.last_err_line()}")


SCENARIOS: dict[str, type[Scenario]] = {
    "ingest": IngestScenario,
    "cycle": CycleScenario,
    "export": ExportScenario,
    "train": TrainScenario,
    "backfill": BackfillScenario,
}


def _maybe_renamed(log: Path) -> set[str]:
    """Files a killed run may have replaced: those whose write reached atomic.before_rename,
    except the one it stopped at there (a file written once)."""
    lines = _log_lines(log)
    passed = Counter(ln.split()[2] for ln in lines if ln.startswith("pass atomic.before_rename "))
    stop = [ln.split() for ln in lines if ln.startswith("stop atomic.before_rename ")]
    if stop and passed[stop[0][2]] == 1:
        del passed[stop[0][2]]
    return set(passed)


def aimed_kill(res: Result, sc: Scenario, aim: Aim, nth: int) -> None:
    sc.start()
    stopped = run_to_point(sc.command, sc.env, sc.work, f"{aim.target}@{nth}")
    if not res.check("stopped", stopped.where is not None, stopped.why):
        return
    stopped.kill()
    res.trials += 1
    res.kills[aim.point] += 1
    res.reported.append(f"{aim.target}@{nth}")
    sc.after_kill(res, stopped.log)
    t0 = SystemClock().now_ms()
    rerun(res, sc.command, sc.env, sc.work)
    sc.after_rerun(res, t0)


def drill_points(world: World, rng: random.Random, aims: list[Aim], short: bool, out: list) -> None:
    """Each aim once (``short``) or three times at a random pass of an uninterrupted run."""
    by_scenario: dict[str, list[Aim]] = {}
    for aim in aims:
        by_scenario.setdefault(aim.scenario, []).append(aim)
    for name, its_aims in by_scenario.items():
        with drill(out, f"kill at points: {name}") as res:
            sc = SCENARIOS[name](world, f"pt-{name}", short)
            try:
                sc.prepare()
                counts = Counter({a.target: 1 for a in its_aims})
                if not short:
                    sc.start()
                    counts, _wall, rc = passes(sc.command, sc.env, sc.work)
                    if rc != 0:
                        raise Missing(f"an uninterrupted `{' '.join(sc.command)}` exit {rc}")
                for aim in its_aims:
                    if counts[aim.target] == 0:
                        raise Missing(f"`{' '.join(sc.command)}` never passes {aim.target}")
                    for _ in range(1 if short else 3):
                        nth = 1 if short else rng.randint(1, counts[aim.target])
                        aimed_kill(res, sc, aim, nth)
            finally:
                sc.close()


def drill_random(world: World, rng: random.Random, short: bool, out: list) -> None:
    """SIGKILL at seeded random instants over an uninterrupted run's duration; each kill
    records the last crash point it passed (its phase)."""
    plan = {"backfill": 8, "ingest": 6, "export": 6, "cycle": 6, "train": 5}
    for name, trials in plan.items():
        with drill(out, f"kill at random: {name}") as res:
            sc = SCENARIOS[name](world, f"rnd-{name}", short)
            try:
                sc.prepare()
                sc.start()
                _counts, wall, rc = passes(sc.command, sc.env, sc.work)
                if rc != 0:
                    raise Missing(f"an uninterrupted `{' '.join(sc.command)}` exit {rc}")
                for _ in range(1 if short else trials):
                    sc.start()
                    phase, log = kill_after(sc.command, sc.env, sc.work, rng.uniform(0.2, wall))
                    if phase is None:
                        res.reported.append("a run finished before its kill")
                        continue
                    res.trials += 1
                    res.kills[phase] += 1
                    sc.after_kill(res, log)
                    t0 = SystemClock().now_ms()
                    rerun(res, sc.command, sc.env, sc.work)
                    sc.after_rerun(res, t0)
            finally:
                sc.close()


# --- 2. influxd stopped and restarted mid-ingest -------------------------------------------------
def drill_influx(world: World, rng: random.Random, short: bool, out: list) -> None:
    """A private influxd. Ingest paused after its second batch: (a) influxd stopped, the run
    resumed: it must fail with exit 1 and say InfluxDB is unreachable; (b) influxd stopped and
    started again, the run resumed: it must complete. Then a rerun must be exact and complete."""
    from coinpredict.replay.influxd import start_influxd

    with drill(out, "influxd stopped mid-ingest") as res:
        idir = world.work / "influx-down"
        proc = start_influxd(idir)
        port = proc.port
        mine = World(world.work, proc.url, world.exchange_url, world.sources, world.defect)
        env = mine.env("down", "BTC/USDT", "1h")
        s = common.settings_for(env)
        work = world.work / "down"

        def fresh() -> None:
            http = InfluxHTTP(proc.url)
            reset(s, http)
            http.close()

        def restart() -> None:
            nonlocal proc
            proc = start_influxd(idir, port)

        def after(rc: int, err: str, want_ok: bool) -> None:
            res.trials += 1
            http = InfluxHTTP(proc.url)
            store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
            if want_ok:
                res.check("resumed", rc == 0, f"exit {rc}: {err.strip()[-200:]}")
            else:
                last = err.strip().splitlines()[-1:] or [""]
                res.reported.append(f"exit {rc}: {last[0]}")
                said = "InfluxDB at" in err and ("unreachable" in err or "HTTP 5" in err)
                res.check("reported", rc == 1 and said, f"exit {rc}: {last[0][-200:]}")
            check_candles(res, mine, s, store)
            t0 = SystemClock().now_ms()
            rerun(res, ["ingest"], env, work)
            check_complete(res, mine, s, store, t0)
            http.close()

        try:
            for influx_back in (False, True):
                fresh()
                stopped = run_to_point(["ingest"], env, work, "ingest.batch_stored@2")
                if not res.check("stopped", stopped.where is not None, stopped.why):
                    continue
                res.reported.append("paused at ingest.batch_stored@2")
                proc.stop()
                if influx_back:
                    restart()
                rc, err = stopped.resume()
                if not influx_back:
                    restart()
                after(rc, err, want_ok=influx_back)
            fresh()
            _counts, wall, _rc = passes(["ingest"], env, work)
            for _ in range(0 if short else 2):  # influxd stopped at a random instant
                fresh()
                run_proc, err_p = spawn(["ingest"], env, work)
                time.sleep(rng.uniform(0.3 * wall, 0.8 * wall))
                alive = run_proc.poll() is None
                proc.stop()
                rc = run_proc.wait(180)
                restart()
                if res.check("stopped", alive, "ingest ended before influxd stopped"):
                    after(rc, err_p.read_text(errors="replace"), want_ok=False)
        finally:
            proc.stop()


# --- 3. disk full: ENOSPC at write (tmpfs) and at fsync (ext4 on a loop file on a tmpfs) --------
def export_world(world: World, name: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """BTC/USDT 1h stored, forecast and exported once -> (env, the exported files)."""
    env = world.env(name, "BTC/USDT", "1h")
    s = common.settings_for(env)
    http = InfluxHTTP(world.influx_url)
    reset(s, http)
    http.close()
    for args in (["backfill"], ["predict"], ["export"]):
        setuprun(args, env, world.work / name)
    return env, {p.name: p.read_bytes() for p in s.export_dir.iterdir()}


def failed_export(
    res: Result, env: dict[str, str], directory: Path, reason: str, prefix: list[str] | None = None
) -> None:
    """``export --force`` into ``directory`` must exit 1 with ``reason`` on one line and leave
    every file in place, each as it was or replaced whole (files are written in parallel: one
    may be renamed into place before another's write or fsync fails; check_files parses them
    all), without a temp file."""
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix == ".json"}
    r = run_cli(
        ["export", "--force"],
        dict(env, COINPREDICT_EXPORT_DIR=str(directory)),
        work=Path(env["COINPREDICT_STATE_DIR"]).parent / "runs",
        prefix=prefix or [],
    )
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    res.trials += 1
    res.reported.append(f"exit {r.rc}: {r.last_err_line()}")
    one = len(lines) == 1 and lines[0].startswith("error: cannot write ") and reason in lines[0]
    res.check("reported", r.rc == 1 and one, f"exit {r.rc}: {lines[-3:]}")
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix == ".json"}
    res.check("intact", set(after) == set(before), f"files lost: {set(before) - set(after)}")
    temps = [p.name for p in directory.iterdir() if p.name.startswith(".")]
    res.check("untouched", not temps, f"temp files left: {temps}")
    check_files(res, directory)


def drill_diskfull(world: World, out: list) -> None:
    with drill(out, "export dir full: ENOSPC at write (tmpfs)") as res:
        env, files = export_world(world, "full")
        size_k = sum(-(-len(v) // 4096) * 4 for v in files.values()) + 64
        with fs.mounted_tmpfs(world.work / "full-tmpfs", size_k) as d:
            for name, data in files.items():
                (d / name).write_bytes(data)
            fs.fill(d)
            failed_export(res, env, d, "No space left on device")
    with drill(out, "export dir full: ENOSPC at fsync (ext4 on a full tmpfs)") as res:
        env, files = export_world(world, "fullsync")
        with fs.ext4_on_tmpfs(world.work / "fsync", 4096) as (mnt, backing):
            for name, data in files.items():
                (mnt / name).write_bytes(data)
            os.sync()
            fs.fill(backing)
            free = os.statvfs(mnt)
            if free.f_bavail * free.f_frsize < 8 << 20:
                raise Missing("the ext4 does not believe it has room: write would fail first")
            failed_export(res, env, mnt, "No space left on device")


# --- 4. the export dir unwritable ----------------------------------------------------------------
def drill_unwritable(world: World, out: list) -> None:
    with drill(out, "export dir unwritable for nobody (EACCES)") as res:
        if os.geteuid() != 0:
            raise Missing("not root: cannot run the CLI as another user")
        env, _files = export_world(world, "eacces")
        with fs.nobody_tree("cpdrill-eacces-") as top:
            state, www = top / "state", top / "www"
            shutil.copytree(env["COINPREDICT_STATE_DIR"], state)
            shutil.copytree(env["COINPREDICT_EXPORT_DIR"], www)
            fs.chown_tree(state, fs.NOBODY)
            fs.chown_tree(www, fs.NOBODY)
            env = dict(env, COINPREDICT_STATE_DIR=str(state), COINPREDICT_EXPORT_DIR=str(www))
            prefix = fs.nobody_prefix()
            control = run_cli(["export", "--force"], env, work=top / "runs", prefix=prefix)
            if control.rc != 0:
                raise Missing(
                    f"export as nobody into its own dir: exit {control.rc}: "
                    f"{control.last_err_line()}"
                )
            fs.chown_tree(www, 0)  # now root's, mode 0755: nobody may not create the temp files
            failed_export(res, env, www, "Permission denied", prefix)
    with drill(out, "export dir immutable for root (chattr +i)") as res:
        env, _files = export_world(world, "immutable")
        www = Path(env["COINPREDICT_EXPORT_DIR"])
        ok = fs.run("chattr", "+i", str(www))
        if ok.returncode != 0:
            raise Missing(f"chattr +i failed: {ok.stderr.strip()[:100]}")
        try:
            failed_export(res, env, www, "Operation not permitted")
        finally:
            fs.run("chattr", "-i", str(www))


# --- 5. faults at 20% ---------------------------------------------------------------------------
def drill_faults(world: World, data: Path, seed: int, short: bool, out: list) -> None:
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.jobs.runner import run_candle_job
    from coinpredict.replay import faults as F
    from coinpredict.replay.server import ReplayServer

    replay_dir = replay_copy(data, world.work / "faults", ["BTC_USDT-1h.csv"])
    rows = read_rows(data / "BTC_USDT-1h.csv")
    clock = FixedClock(rows[-1][0] + H + 1)
    pages = -(-TF.count(rows[0][0], rows[-1][0]) // 1000)
    src = {("BTC", "1h"): {r[0]: bits(r) for r in rows}}
    http = InfluxHTTP(world.influx_url)
    table_rows = []
    for n, kind in enumerate(["all"] if short else [*F.ALL, "all"]):
        with drill(out, f"faults 20% {kind}") as res:
            env = env_for(world.influx_url, world.work / f"f{n}", db=f"faults{n}")
            s = common.settings_for(env)
            init_storage(s, http)
            store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
            with ReplayServer(
                replay_dir,
                clock=clock,
                fault_rate=0.2,
                faults=kind,
                seed=seed + n,
                slow_s=1.5,
                rate_limit=False,
            ) as server:
                adapter = ExchangeAdapter(
                    "binance",
                    server.url,
                    clock=clock,
                    sleep=lambda _s: None,
                    timeout_ms=700,
                    max_tries=12,
                )
                t0 = time.perf_counter()
                report = run_candle_job(
                    "backfill",
                    common.settings_for(dict(env, COINPREDICT_EXCHANGE_URL=server.url)),
                    clock=clock,
                    exchange=adapter,
                )
                wall = time.perf_counter() - t0
                adapter.close()
                requests = server.counts["klines"]
                injected = sum(server.faults_injected.values())
            res.trials = 1
            errors = [o.error for o in report.failed][:1]
            res.check("rerun", report.exit_code == 0, f"exit {report.exit_code}: {errors}")
            check_complete(res, World(world.work, "", "", src), s, store, clock.now_ms())
            res.check("requests", requests <= 2 * pages + 10, f"{requests} for {pages} pages")
            table_rows.append([kind, injected, requests, pages, f"{wall:.1f} s", report.exit_code])
    http.close()
    print(
        table(
            ["fault kind (20%)", "injected", "klines requests", "pages", "wall", "exit"], table_rows
        )
    )


# --- 6. clock skew ------------------------------------------------------------------------------
def drill_skew(world: World, data: Path, out: list) -> None:
    from coinpredict.replay.server import ReplayServer

    replay_dir = replay_copy(data, world.work / "skew", ["BTC_USDT-1h.csv"])
    rows = read_rows(data / "BTC_USDT-1h.csv")
    src = {("BTC", "1h"): {r[0]: bits(r) for r in rows}}
    h0 = TF.floor(rows[-1][0] - 30 * 24 * H)  # an hour boundary inside the data
    http = InfluxHTTP(world.influx_url)
    for n, (label, offset_min) in enumerate((("ahead", 5), ("behind", -5))):
        with drill(out, f"clock skew: exchange 5 min {label}") as res:
            if shutil.which("faketime") is None:
                raise Missing("faketime not installed")
            env = env_for(world.influx_url, world.work / f"skew{n}", db=f"skew{n}")
            s = common.settings_for(env)
            init_storage(s, http)
            store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
            x = Series("binance", "BTC/USDT", TF)
            since = ["--since", iso(h0 - 48 * H)]
            local1 = h0 - 2 * 60_000 if offset_min > 0 else h0 + 2 * 60_000
            for local in (local1, h0 + 8 * 60_000):
                clock = FixedClock(local + offset_min * 60_000)
                with ReplayServer(replay_dir, clock=clock, rate_limit=False) as server:
                    r = run_cli(
                        ["backfill", *since],
                        dict(env, COINPREDICT_EXCHANGE_URL=server.url),
                        work=world.work / f"skew{n}",
                        prefix=faketime_prefix(iso(local)),
                    )
                res.trials += 1
                res.check("rerun", r.rc == 0, f"exit {r.rc}: {r.last_err_line()}")
                check_candles(res, World(world.work, "", "", src), s, store)
                got = store.read(x).rows()
                newest = got[-1][0] if got else None
                closed_both = TF.last_closed_open(min(local, local + offset_min * 60_000))
                res.check(
                    "open",
                    newest is None or newest <= closed_both,
                    f"stored {iso(newest or 0)}: open at one of the two clocks",
                )
                if local != local1:
                    want = [
                        t
                        for t in src[("BTC", "1h")]
                        if h0 - 48 * H <= t <= TF.last_closed_open(local)
                    ]
                    have = {g[0] for g in got}
                    lost = sum(1 for t in want if t not in have)
                    res.lost += lost
                    res.check(
                        "lost", lost == 0, f"{lost} closed candles missing after the next run"
                    )
                res.reported.append(
                    f"run at {iso(local)[11:16]} newest {iso(newest)[11:16]}"
                    if newest
                    else "nothing stored"
                )
    http.close()


# --- 7. hostile symbols -------------------------------------------------------------------------
def drill_hostile(world: World, short: bool, out: list) -> None:
    with drill(out, "hostile symbols") as res:
        work = world.work / "hostile"
        env = env_for(world.influx_url, work, db="hostile", exchange_url="http://127.0.0.1:9")
        http = InfluxHTTP(world.influx_url)
        init_storage(common.settings_for(env), http)

        def footprint() -> tuple:
            n = http.query("SELECT count(close) FROM candles", db="hostile")
            files = sorted(
                str(p) for p in work.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
            return (json.dumps(n), tuple(files))

        before = footprint()
        symbols = ('BTC"/USDT', "BTC\n/USDT", "../x/USDT", "BTC/USDT/../../x")
        for sym in symbols[:2] if short else symbols:
            for how in ("flag", "env"):
                for cmd in (["backfill"], ["export"], ["predict"]):
                    if how == "flag":
                        r = run_cli([*cmd, "-s", sym], env, work=world.work / "hostile-runs")
                    else:
                        r = run_cli(
                            cmd,
                            dict(env, COINPREDICT_SYMBOLS=sym),
                            work=world.work / "hostile-runs",
                        )
                    res.trials += 1
                    res.check("reported", r.rc == 2, f"{cmd[0]} {how} {sym!r}: exit {r.rc}")
                    if cmd == ["backfill"]:
                        res.reported.append(f"exit {r.rc}: {r.last_err_line()[:160]}")
        res.check("untouched", footprint() == before, "something was written")
        http.close()


# --- the runner ---------------------------------------------------------------------------------
def quiet_replay_errors() -> None:
    """Killed clients make the replay's handler threads print ConnectionResetError tracebacks;
    count them instead."""
    import socketserver

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        QUIET["handler_errors"] += 1

    socketserver.BaseServer.handle_error = handle_error  # type: ignore[method-assign]


QUIET = {"handler_errors": 0}


def summary(results: list[Result], required: set[str], wall: float) -> dict:
    """Print the tables; -> the machine-readable summary (``ok`` False on any problem)."""
    print(
        table(
            [
                "drill",
                "trials",
                "kills",
                "candles lost",
                "duplicated",
                "wrong",
                "torn files",
                "reported",
                "verdict",
            ],
            [r.row() for r in results],
        )
    )
    kills: Counter[str] = Counter()
    for r in results:
        kills.update(r.kills)
    unkilled = sorted(p for p in required if kills[p] == 0)
    print(
        table(
            ["crash point / phase", "kills"],
            [[p, kills[p]] for p in sorted(kills)] + [[p, 0] for p in unkilled],
        )
    )
    checked: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    for r in results:
        checked.update(r.checked)
        broken.update(r.broken)
    print(
        table(
            ["invariant", "checked", "broken"],
            [[INVARIANTS[k], checked[k], broken[k]] for k in INVARIANTS if checked[k]],
        )
    )
    problems = [f"{r.drill}: {p}" for r in results for p in r.problems]
    problems += [f"crash point {p} got no kill" for p in unkilled]
    for p in problems:
        print(f"PROBLEM {p}")
    n_kills = sum(kills.values())
    print(
        f"RESULT {sum(r.trials for r in results)} trials ({n_kills} kills), "
        f"{sum(r.lost for r in results)} candles lost, "
        f"{sum(r.duplicated for r in results)} duplicated, {sum(r.wrong for r in results)} "
        f"wrong, {sum(r.torn for r in results)} torn files, {sum(broken.values())} of "
        f"{sum(checked.values())} checks broken; "
        f"{'all drills passed' if not problems else f'FAILED ({len(problems)} problems)'} "
        f"({wall:.0f} s; load {common.loadavg()}; {QUIET['handler_errors']} replay handler "
        "errors from killed clients)"
    )
    return {
        "ok": not problems,
        "problems": problems,
        "kills": dict(kills),
        "invariants": {k: [checked[k], broken[k]] for k in INVARIANTS if checked[k]},
        "drills": {
            r.drill: {
                "trials": r.trials,
                "kills": dict(r.kills),
                "reported": sorted(set(r.reported)),
            }
            for r in results
        },
        "wall_s": round(wall, 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--only", default=",".join(DRILLS))
    parser.add_argument("--short", action="store_true", help="the set `make test` runs")
    parser.add_argument("--points", default="", help="aim only at these crash points")
    parser.add_argument("--data", type=Path, default=common.DATA)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--plant-defect", choices=DEFECTS, default=None)
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(DRILLS)
    if unknown:
        parser.error(f"unknown drills {sorted(unknown)}; choose from {', '.join(DRILLS)}")
    bad = set(filter(None, args.points.split(","))) - set(POINTS)
    if bad:
        parser.error(f"unknown crash points {sorted(bad)}; choose from {', '.join(POINTS)}")
    return args


def run_drills(args: argparse.Namespace, work: Path, results: list[Result]) -> set[str]:
    """Run the selected drills -> the crash points that must have been killed at."""
    from coinpredict.replay.server import ReplayServer

    only = set(args.only.split(","))
    rng = random.Random(args.seed)
    chosen = set(filter(None, args.points.split(","))) or set(POINTS)
    aims = [a for a in AIMS if a.point in chosen]
    names = [f"{b}_USDT-{tf}.csv" for b in ("BTC", "ETH") for tf in ("1h", "1d")]
    with influxd(work) as proc:
        replay_dir = replay_copy(args.data, work, names)
        with ReplayServer(replay_dir, shift_to_now=True, rate_limit=False) as server:
            world = World(work, proc.url, server.url, served_sources(server), args.plant_defect)
            if "points" in only:
                drill_points(world, rng, aims, args.short, results)
            if "random" in only:
                drill_random(world, rng, args.short, results)
            if "influx" in only:
                drill_influx(world, rng, args.short, results)
            if "diskfull" in only:
                drill_diskfull(world, results)
            if "unwritable" in only:
                drill_unwritable(world, results)
        if "faults" in only:
            drill_faults(world, args.data, args.seed, args.short, results)
        if "skew" in only:
            drill_skew(world, args.data, results)
        if "hostile" in only:
            drill_hostile(world, args.short, results)
    return {a.point for a in aims} if "points" in only else set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.DATA = args.data  # what the header reports
    header(
        f"reliability drills (seed {args.seed}{', short set' if args.short else ''}; "
        f"data {args.data})"
    )
    quiet_replay_errors()
    import logging

    logging.getLogger("coinpredict").addHandler(logging.NullHandler())  # in-process retries
    logging.getLogger("coinpredict").propagate = False
    results: list[Result] = []
    t0 = time.perf_counter()
    with common.tempdir("cpdrills-") as work:
        try:
            required = run_drills(args, work, results)
        except Missing as exc:  # the shared setup (data files, influxd, the replay)
            res = Result("setup")
            res.check("ran", False, f"precondition missing: {exc}")
            results.append(res)
            required = set()
        except Exception as exc:  # noqa: BLE001 - a runner defect: keep the results so far, fail
            traceback.print_exc()
            res = Result("runner")
            res.check("ran", False, f"the runner crashed: {type(exc).__name__}: {exc}")
            results.append(res)
            required = set()
    doc = summary(results, required, time.perf_counter() - t0)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
