"""Reliability drills (the full set; the test suite runs a fast subset). See docs/reliability.md.

    .venv/bin/python bench/drills.py [--seed 20261127] [--only kill,influx,faults,...]

1. kill -9 at seeded random instants of ``backfill``, ``ingest``, ``export``, ``cycle`` and
   ``train`` run through the real CLI (>= 20 trials). After every kill: every stored candle is bitwise the
   source row of its timestamp, no duplicates, the cursor is never ahead of the stored data,
   every exported file parses, every cached model window equals InfluxDB's candles, the model
   registry loads and the champion is unchanged. After the
   last kill a rerun must finish and leave exactly the source's closed candles.
2. InfluxDB stopped (SIGTERM) during ``ingest``, then restarted: the run must fail with a clear
   message and exit code, and the rerun must be exact.
3. The replay exchange injecting each fault kind at 20% (and all kinds mixed): exact data, and
   klines requests bounded by 2 x pages + 10.
4. The export dir unwritable (``chattr +i``: root ignores chmod) and full (a tmpfs just big enough for the last export, then filled up):
   exit 1 with a message, files already in place intact.
5. The exchange clock ahead of / behind ours by 5 minutes around an hour boundary (the CLI under
   faketime, the replay on a FixedClock): the open candle is never stored, and the candle that
   closed is stored by the next run.
6. Hostile symbols (``BTC"/USDT``, a newline, ``../x/USDT``) on the command line and in the
   environment: exit 2, nothing written.
Prints a summary table; asserts nothing (a failed check is a FAIL row).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    DATA,
    H,
    bits,
    env_for,
    faketime_prefix,
    header,
    influxd,
    read_rows,
    reap,
    run_cli,
    settings_for,
    start_cli,
    table,
    tempdir,
)

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, WEEK_MS, iso
from coinpredict.local.state import load_ingest
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage

TF = TIMEFRAMES["1h"]


@dataclass
class Result:
    drill: str
    trials: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0  # stored rows that differ from the source (bits) or are not in it
    torn: int = 0
    failures: list[str] = field(default_factory=list)  # "exit N: message" reported by the CLI
    problems: list[str] = field(default_factory=list)  # broken invariants

    def row(self) -> list:
        reported = "; ".join(sorted(set(self.failures)))[:110] or "-"
        verdict = "ok" if not self.problems else "FAIL: " + "; ".join(self.problems)[:120]
        return [
            self.drill,
            self.trials,
            self.lost,
            self.duplicated,
            self.wrong,
            self.torn,
            reported,
            verdict,
        ]


# --- checks -----------------------------------------------------------------------------------
def source_map(base: str, tf_code: str, shift: int) -> dict[int, tuple]:
    return {
        r[0] + shift: bits((r[0] + shift, *r[1:]))
        for r in read_rows(DATA / f"{base}_USDT-{tf_code}.csv")
    }


def check_store(
    store: CandleStore, series: Series, src: dict[int, tuple], res: Result, state_dir: Path
) -> list:
    got = store.read(series).rows()
    stamps = [r[0] for r in got]
    dup = len(stamps) - len(set(stamps))
    wrong = sum(1 for r in got if src.get(r[0]) != bits(r))
    res.duplicated += dup
    res.wrong += wrong
    cursor = load_ingest(state_dir, series).cursor
    latest = stamps[-1] if stamps else None
    if cursor is not None and (latest is None or cursor > latest):
        res.problems.append(f"{series}: cursor {iso(cursor)} ahead of data")
    if dup or wrong:
        res.problems.append(f"{series}: {dup} duplicated, {wrong} wrong rows")
    return got


def final_exact(
    store: CandleStore,
    series: Series,
    src: dict[int, tuple],
    now_start: int,
    res: Result,
    state_dir: Path,
    since: int | None = None,
) -> None:
    """After the last rerun: every source candle closed when the rerun started is stored."""
    got = check_store(store, series, src, res, state_dir)
    have = {r[0] for r in got}
    want = [
        t for t in src if series.timeframe.is_closed(t, now_start) and (since is None or t >= since)
    ]
    lost = sum(1 for t in want if t not in have)
    res.lost += lost
    if lost:
        res.problems.append(f"{series}: {lost} candles lost")
    open_stored = [t for t in have if not series.timeframe.is_closed(t, SystemClock().now_ms())]
    if open_stored:
        res.problems.append(f"{series}: open candle {iso(open_stored[0])} stored")


def export_files_parse(directory: Path, res: Result) -> None:
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if p.name.startswith(".") or not p.name.endswith(".json"):
            continue
        try:
            json.loads(p.read_text())
        except (ValueError, OSError) as exc:
            res.torn += 1
            res.problems.append(f"{p.name} does not parse: {exc}")


def windows_match(store: CandleStore, series: list[Series], state_dir: Path, res: Result) -> None:
    """Every cached model window holds exactly InfluxDB's candles over its range."""
    from coinpredict.serving.windows import _load, window_path

    for x in series:
        cached = _load(window_path(state_dir, x))
        if cached is None:
            continue
        frame = cached[0]
        ts = frame["timestamp"]
        stored = store.read(x, int(ts[0]), int(ts[-1]))
        if [bits(r) for r in frame.rows()] != [bits(r) for r in stored.rows()]:
            res.wrong += 1
            res.problems.append(f"{x}: cached model window differs from InfluxDB")


def kill_during(args: list[str], env: dict, work: Path, delay: float) -> tuple[bool, int]:
    """Start the CLI, SIGKILL it after ``delay`` s. -> (was killed, exit code)."""
    proc, out_p, err_p = start_cli(args, env, work=work)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    rc, _ = reap(proc) if proc.returncode is None else (proc.returncode, 0)
    out_p.unlink(missing_ok=True)
    err_p.unlink(missing_ok=True)
    return killed, rc


def reset(http: InfluxHTTP, settings) -> None:  # noqa: ANN001
    """A fresh start: drop the candle databases, remove the state dir, init again."""
    for db in (settings.influx_db, settings.influx_db_1m):
        http.query(f'DROP DATABASE "{db}"', write=True)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    init_storage(settings, http)


def full_run_seconds(args: list[str], env: dict, work: Path, http: InfluxHTTP, settings) -> float:  # noqa: ANN001
    """How long an uninterrupted run takes (kills are spread over it)."""
    reset(http, settings)
    r = run_cli(args, env, work=work)
    return r.wall_s


def quiet_replay_errors() -> None:
    """Killed clients make the replay's handler threads print ConnectionResetError tracebacks;
    count them instead."""
    import socketserver

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        QUIET["handler_errors"] += 1

    socketserver.BaseServer.handle_error = handle_error  # type: ignore[method-assign]


QUIET = {"handler_errors": 0}


def note_failure(res: Result, run) -> None:  # noqa: ANN001
    res.failures.append(f"exit {run.rc}: {run.last_err_line()[:90]}")


# --- 1. kill -9 ---------------------------------------------------------------------------------
def kill_and_rerun(
    command: str,
    where: Path,
    url: str,
    exchange_url: str,
    shift: int,
    http: InfluxHTTP,
    rng: random.Random,
    *,
    trials: int,
    symbols: tuple[str, ...],
    db: str,
) -> Result:
    """``coinpredict COMMAND`` of SYMBOLS x 1h + 1d from fresh databases, SIGKILLed at a seeded
    instant within an uninterrupted run, checked, rerun to completion, checked again."""
    res = Result(f"kill -9 {command}")
    env = env_for(
        url,
        where,
        exchange_url=exchange_url,
        symbols=",".join(f"{b}/USDT" for b in symbols),
        timeframes="1h,1d",
        db=db,
    )
    s = settings_for(env)
    init_storage(s, http)
    store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
    series = [Series("binance", f"{b}/USDT", TIMEFRAMES[t]) for b in symbols for t in ("1h", "1d")]
    srcs = {x: source_map(x.symbol.split("/")[0], x.timeframe.code, shift) for x in series}

    def check() -> None:
        export_files_parse(s.export_dir, res)
        windows_match(store, series, s.state_dir, res)

    t_full = full_run_seconds([command], env, where, http, s)
    for _ in range(trials):
        reset(http, s)
        killed, _rc = kill_during([command], env, where, rng.uniform(0.3, t_full))
        res.trials += killed
        for x in series:
            check_store(store, x, srcs[x], res, s.state_dir)
        check()
        t0 = SystemClock().now_ms()
        final = run_cli([command], env, work=where)
        if final.rc != 0:
            res.problems.append(f"rerun exit {final.rc}: {final.last_err_line()}")
        for x in series:
            final_exact(store, x, srcs[x], t0, res, s.state_dir)
        check()
    return res


def drill_kill(work: Path, url: str, rng: random.Random, results: list[Result]) -> None:
    from coinpredict.replay.server import ReplayServer

    replay_dir = work / "replay-kill"
    replay_dir.mkdir()
    for base in ("BTC", "ETH"):
        for tf in ("1h", "1d"):
            shutil.copy(DATA / f"{base}_USDT-{tf}.csv", replay_dir)
    with ReplayServer(replay_dir, shift_to_now=True, latency_ms=40, rate_limit=False) as server:
        shift = server.data.week_shift * WEEK_MS
        # backfill: BTC/USDT + ETH/USDT 1h, full history
        res = Result("kill -9 backfill")
        env = env_for(
            url, work / "kb", exchange_url=server.url, symbols="BTC/USDT,ETH/USDT", db="killb"
        )
        s = settings_for(env)
        http = InfluxHTTP(url)
        init_storage(s, http)
        store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
        series = [Series("binance", f"{b}/USDT", TF) for b in ("BTC", "ETH")]
        srcs = {x: source_map(x.symbol.split("/")[0], "1h", shift) for x in series}
        t_full = full_run_seconds(["backfill"], env, work / "kb", http, s)
        for _ in range(8):
            reset(http, s)
            killed, _rc = kill_during(["backfill"], env, work / "kb", rng.uniform(0.3, t_full))
            res.trials += killed
            for x in series:
                check_store(store, x, srcs[x], res, s.state_dir)
            t0 = SystemClock().now_ms()
            final = run_cli(["backfill"], env, work=work / "kb")
            if final.rc != 0:
                res.problems.append(f"rerun exit {final.rc}: {final.last_err_line()}")
            for x in series:
                final_exact(store, x, srcs[x], t0, res, s.state_dir)
        results.append(res)

        # ingest: ETH/USDT + BTC/USDT 1d + 1h on a fresh database (ingest backfills new series)
        results.append(
            kill_and_rerun(
                "ingest",
                work / "ki",
                url,
                server.url,
                shift,
                http,
                rng,
                trials=6,
                symbols=("ETH", "BTC"),
                db="killi",
            )
        )

        # export: on the backfilled database, with forecasts
        res = Result("kill -9 export")
        env_b = env_for(
            url, work / "kb", exchange_url=server.url, symbols="BTC/USDT,ETH/USDT", db="killb"
        )
        pred = run_cli(["predict"], env_b, work=work / "kb")
        if pred.rc != 0:
            res.problems.append(f"predict exit {pred.rc}: {pred.last_err_line()}")
        first = run_cli(["export"], env_b, work=work / "kb")
        export_dir = work / "kb" / "www"
        for _ in range(6):
            killed, _rc = kill_during(
                ["export"], env_b, work / "kb", rng.uniform(0.1, first.wall_s)
            )
            res.trials += killed
            export_files_parse(export_dir, res)
        final = run_cli(["export"], env_b, work=work / "kb")
        if final.rc != 0 or first.rc != 0:
            res.problems.append(f"export exit {first.rc}/{final.rc}: {final.last_err_line()}")
        export_files_parse(export_dir, res)
        leftovers = [p.name for p in export_dir.iterdir() if p.name.startswith(".")]
        if leftovers:
            res.failures.append(f"{len(leftovers)} dot temp files left by killed runs")
        results.append(res)

        # cycle (what systemd runs): ingest (backfilling the new series), predict, export in one
        # process on a fresh database; after every kill the candles are exact, the files parse
        # and every cached model window equals InfluxDB's candles over its range
        results.append(
            kill_and_rerun(
                "cycle",
                work / "kc",
                url,
                server.url,
                shift,
                http,
                rng,
                trials=6,
                symbols=("BTC", "ETH"),
                db="killc",
            )
        )

        # train: champion promoted first; kills of `train` (no --promote) must not change it
        res = Result("kill -9 train")
        env_t = dict(env_b, COINPREDICT_SYMBOLS="BTC/USDT")
        tr = run_cli(["train", "--promote", "--margin", "-5"], env_t, work=work / "kb")
        from coinpredict.forecast.registry import Registry

        mdir = settings_for(env_t).state_dir / "models"
        champ0 = Registry(mdir, "BTC/USDT", TF).champion().version
        if tr.rc != 0:
            res.failures.append(f"setup train --promote exit {tr.rc}: {tr.last_err_line()[:80]}")
        plain = run_cli(["train"], env_t, work=work / "kb")  # how long a plain `train` takes
        t_train = max(plain.wall_s, 1.0)
        for _ in range(5):
            killed, _rc = kill_during(["train"], env_t, work / "kb", rng.uniform(0.3, t_train))
            res.trials += killed
            try:
                reg = Registry(mdir, "BTC/USDT", TF)
                reg.state()
                if reg.champion().version != champ0:
                    res.problems.append(f"champion changed {champ0} -> {reg.champion().version}")
                if reg.shadow() is not None:
                    reg.shadow().load(TF, 24)
            except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
                res.problems.append(f"registry: {type(exc).__name__}: {exc}")
        ml = run_cli(["models", "list", "-s", "BTC/USDT", "-t", "1h"], env_t, work=work / "kb")
        if ml.rc != 0:
            res.problems.append(f"models list exit {ml.rc}: {ml.last_err_line()}")
        res.failures.append(f"champion {champ0} kept")
        results.append(res)
        http.close()


# --- 2. InfluxDB down during ingest -------------------------------------------------------------
def drill_influx_down(work: Path, rng: random.Random, results: list[Result]) -> None:
    from coinpredict.replay.influxd import start_influxd
    from coinpredict.replay.server import ReplayServer

    res = Result("influxd stopped mid-ingest")
    replay_dir = work / "replay-down"
    replay_dir.mkdir()
    shutil.copy(DATA / "BTC_USDT-1h.csv", replay_dir)
    idir = work / "influx-down"
    proc = start_influxd(idir)
    port = proc.port
    try:
        with ReplayServer(
            replay_dir, shift_to_now=True, latency_ms=150, rate_limit=False
        ) as server:
            shift = server.data.week_shift * WEEK_MS
            env = env_for(proc.url, work / "down", exchange_url=server.url, db="down")
            s = settings_for(env)
            http = InfluxHTTP(proc.url)
            init_storage(s, http)
            http.close()
            for trial in range(2):
                http = InfluxHTTP(proc.url)
                reset(http, s)  # each trial starts from nothing: ingest backfills the series
                http.close()
                run_proc, out_p, err_p = start_cli(["ingest"], env, work=work / "down")
                time.sleep(rng.uniform(2.0, 3.5))
                alive = run_proc.poll() is None
                proc.stop()  # SIGTERM: influxd shuts down while pages are being written
                rc, _ = reap(run_proc, 120)
                err = err_p.read_text()
                last = [ln for ln in err.splitlines() if ln.strip() and "INFO" not in ln]
                res.trials += 1
                res.failures.append(f"exit {rc}: {(last[-1] if last else '')[-200:]}")
                if not alive:
                    res.problems.append(f"trial {trial}: ingest ended before influxd stopped")
                elif rc == 0:
                    res.problems.append(f"trial {trial}: ingest exit 0 with InfluxDB down")
                proc = start_influxd(idir, port)
            t0 = SystemClock().now_ms()
            final = run_cli(["ingest"], env, work=work / "down")
            if final.rc != 0:
                res.problems.append(f"rerun exit {final.rc}: {final.last_err_line()}")
            http = InfluxHTTP(proc.url)
            store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
            x = Series("binance", "BTC/USDT", TF)
            final_exact(store, x, source_map("BTC", "1h", shift), t0, res, s.state_dir)
            http.close()
    finally:
        proc.stop()
    results.append(res)


# --- 3. faults at 20% ---------------------------------------------------------------------------
def drill_faults(work: Path, url: str, seed: int, results: list[Result]) -> None:
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.jobs.runner import run_candle_job
    from coinpredict.replay import faults as F
    from coinpredict.replay.server import ReplayServer

    replay_dir = work / "replay-faults"
    replay_dir.mkdir()
    shutil.copy(DATA / "BTC_USDT-1h.csv", replay_dir)
    rows = read_rows(DATA / "BTC_USDT-1h.csv")
    src = {r[0]: bits(r) for r in rows}
    clock = FixedClock(rows[-1][0] + H + 1)
    pages = -(-TF.count(rows[0][0], rows[-1][0]) // 1000)
    http = InfluxHTTP(url)
    table_rows = []
    for n, kind in enumerate([*F.ALL, "all"]):
        res = Result(f"faults 20% {kind}")
        env = env_for(url, work / f"f{n}", db=f"faults{n}")
        s = settings_for(env)
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
                settings_for(dict(env, COINPREDICT_EXCHANGE_URL=server.url)),
                clock=clock,
                exchange=adapter,
            )
            wall = time.perf_counter() - t0
            adapter.close()
            requests = server.counts["klines"]
            injected = sum(server.faults_injected.values())
        res.trials = 1
        if report.exit_code != 0:
            res.problems.append(f"exit {report.exit_code}: {[o.error for o in report.failed][:1]}")
        final_exact(store, Series("binance", "BTC/USDT", TF), src, clock.now_ms(), res, s.state_dir)
        if requests > 2 * pages + 10:
            res.problems.append(f"{requests} klines requests for {pages} pages")
        table_rows.append([kind, injected, requests, pages, f"{wall:.1f} s", report.exit_code])
        results.append(res)
    http.close()
    print(
        table(
            ["fault kind (20%)", "injected", "klines requests", "pages", "wall", "exit"], table_rows
        )
    )


# --- 4. export dir unwritable / full ------------------------------------------------------------
def drill_export_dir(work: Path, url: str, results: list[Result]) -> None:
    from coinpredict.replay.server import ReplayServer

    replay_dir = work / "replay-exp"
    replay_dir.mkdir()
    shutil.copy(DATA / "BTC_USDT-1h.csv", replay_dir)
    with ReplayServer(replay_dir, shift_to_now=True, rate_limit=False) as server:
        env = env_for(url, work / "exp", exchange_url=server.url, db="exp")
        for argv in (["init"], ["backfill"], ["predict"], ["export"]):
            r = run_cli(argv, env, work=work / "exp")
            if r.rc != 0:
                print(f"!! export drill setup {argv}: exit {r.rc}: {r.last_err_line()}")
    export_dir = work / "exp" / "www"

    def snapshot() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in export_dir.iterdir() if p.is_file()}

    # unwritable
    res = Result("export dir unwritable")
    before = snapshot()
    ok = subprocess.run(["chattr", "+i", str(export_dir)], capture_output=True, text=True)
    if ok.returncode != 0:
        res.failures.append(f"skipped: chattr +i failed: {ok.stderr.strip()}")
    else:
        try:
            r = run_cli(["export"], env, work=work / "exp-runs")
            res.trials = 1
            note_failure(res, r)
            if r.rc != 1:
                res.problems.append(f"exit {r.rc}, expected 1")
        finally:
            subprocess.run(["chattr", "-i", str(export_dir)], check=False)
        if snapshot() != before:
            res.problems.append("files in place changed")
        export_files_parse(export_dir, res)
    results.append(res)

    # full
    res = Result("export dir full (tmpfs)")
    full = work / "full"
    full.mkdir()
    size_k = sum(-(-len(v) // 4096) * 4 for v in before.values()) + 256
    m = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(full)],
        capture_output=True,
        text=True,
    )
    if m.returncode != 0:
        res.failures.append(f"skipped: mount tmpfs failed: {m.stderr.strip()[:80]}")
        results.append(res)
        return
    try:
        for name, data in before.items():  # the last good export is in place
            (full / name).write_bytes(data)
        filler = full / "filler"
        try:
            with filler.open("wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        except OSError:
            pass
        in_place = {p.name: p.read_bytes() for p in full.iterdir() if p.name != "filler"}
        r = run_cli(["export"], dict(env, COINPREDICT_EXPORT_DIR=str(full)), work=work / "exp-runs")
        res.trials = 1
        note_failure(res, r)
        if r.rc != 1:
            res.problems.append(f"exit {r.rc}, expected 1")
        after = {p.name: p.read_bytes() for p in full.iterdir() if p.name != "filler"}
        if any(after.get(k) != v for k, v in in_place.items()):
            res.problems.append("files in place changed")
        tmp_left = [k for k in after if k.startswith(".")]
        if tmp_left:
            res.problems.append(f"temp files left: {tmp_left}")
        export_files_parse(full, res)
    finally:
        subprocess.run(["umount", str(full)], check=False)
    results.append(res)


# --- 5. clock skew ------------------------------------------------------------------------------
def drill_clock_skew(work: Path, url: str, results: list[Result]) -> None:
    from coinpredict.replay.server import ReplayServer

    replay_dir = work / "replay-skew"
    replay_dir.mkdir()
    shutil.copy(DATA / "BTC_USDT-1h.csv", replay_dir)
    rows = read_rows(DATA / "BTC_USDT-1h.csv")
    src = {r[0]: bits(r) for r in rows}
    h0 = TF.floor(rows[-1][0] - 30 * 24 * H)  # an hour boundary inside the data
    http = InfluxHTTP(url)
    for n, (label, offset_min) in enumerate(
        (("exchange 5 min ahead", 5), ("exchange 5 min behind", -5))
    ):
        res = Result(f"clock skew: {label}")
        env = env_for(url, work / f"skew{n}", db=f"skew{n}")
        s = settings_for(env)
        init_storage(s, http)
        store = CandleStore(http, db=s.influx_db, db_1m=s.influx_db_1m)
        x = Series("binance", "BTC/USDT", TF)
        since = ["--since", iso(h0 - 48 * H)]
        # run 1: our clock 2 min before / after the boundary h0, the exchange's offset from it
        local1 = h0 - 2 * 60_000 if offset_min > 0 else h0 + 2 * 60_000
        local2 = h0 + 8 * 60_000
        for local in (local1, local2):
            clock = FixedClock(local + offset_min * 60_000)
            with ReplayServer(replay_dir, clock=clock, rate_limit=False) as server:
                r = run_cli(
                    ["backfill", *since],
                    dict(env, COINPREDICT_EXCHANGE_URL=server.url),
                    work=work / f"skew{n}",
                    prefix=faketime_prefix(iso(local)),
                )
            res.trials += 1
            if r.rc != 0:
                res.problems.append(f"exit {r.rc}: {r.last_err_line()}")
            got = check_store(store, x, src, res, s.state_dir)
            newest = got[-1][0] if got else None
            closed_both = TF.last_closed_open(min(local, local + offset_min * 60_000))
            if newest is not None and newest > TF.last_closed_open(local):
                res.problems.append(f"stored {iso(newest)}: open by our clock at {iso(local)}")
            if newest is not None and newest > closed_both:
                res.problems.append(f"stored {iso(newest)}: open at one of the two clocks")
            if local == local2:
                want = [t for t in src if h0 - 48 * H <= t <= TF.last_closed_open(local)]
                have = {g[0] for g in got}
                lost = sum(1 for t in want if t not in have)
                res.lost += lost
                if lost:
                    res.problems.append(f"{lost} closed candles missing after the next run")
            res.failures.append(
                f"run at {iso(local)[11:16]} newest {iso(newest)[11:16]}"
                if newest
                else "nothing stored"
            )
        results.append(res)
    http.close()


# --- 6. hostile symbols -------------------------------------------------------------------------
def drill_hostile(work: Path, url: str, results: list[Result]) -> None:
    res = Result("hostile symbols")
    env = env_for(url, work / "hostile", db="hostile", exchange_url="http://127.0.0.1:9")
    http = InfluxHTTP(url)
    init_storage(settings_for(env), http)

    def footprint() -> tuple:
        n = http.query("SELECT count(close) FROM candles", db="hostile")
        files = sorted(
            str(p)
            for p in (work / "hostile").rglob("*")
            if p.is_file()
            and not p.name.startswith(".out-")
            and not p.name.startswith(".err-")
            and not p.name.startswith(".rss-")
        )
        return (json.dumps(n), tuple(files))

    before = footprint()
    for sym in ('BTC"/USDT', "BTC\n/USDT", "../x/USDT", "BTC/USDT/../../x"):
        for how in ("flag", "env"):
            for cmd in (["backfill"], ["export"], ["predict"]):
                if how == "flag":
                    r = run_cli([*cmd, "-s", sym], env, work=work / "hostile-runs")
                else:
                    r = run_cli(cmd, dict(env, COINPREDICT_SYMBOLS=sym), work=work / "hostile-runs")
                res.trials += 1
                if r.rc != 2:
                    res.problems.append(f"{cmd[0]} {how} {sym!r}: exit {r.rc}")
                res.failures.append(
                    f"exit {r.rc}: {r.last_err_line()[:160]}"
                    if cmd == ["backfill"]
                    else f"exit {r.rc}"
                )
    if footprint() != before:
        res.problems.append("something was written")
    http.close()
    results.append(res)


DRILLS = ("kill", "influx", "faults", "exportdir", "skew", "hostile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--only", default=",".join(DRILLS))
    args = parser.parse_args()
    only = set(args.only.split(","))
    header(f"reliability drills (seed {args.seed})")
    rng = random.Random(args.seed)
    quiet_replay_errors()
    import logging

    logging.getLogger("coinpredict").addHandler(logging.NullHandler())  # in-process retries
    logging.getLogger("coinpredict").propagate = False
    results: list[Result] = []
    t0 = time.perf_counter()
    with tempdir() as work:
        with influxd(work) as proc:
            if "kill" in only:
                drill_kill(work, proc.url, rng, results)
            if "faults" in only:
                drill_faults(work, proc.url, args.seed, results)
            if "exportdir" in only:
                drill_export_dir(work, proc.url, results)
            if "skew" in only:
                drill_clock_skew(work, proc.url, results)
            if "hostile" in only:
                drill_hostile(work, proc.url, results)
        if "influx" in only:
            drill_influx_down(work, rng, results)
    print(
        table(
            [
                "drill",
                "trials",
                "candles lost",
                "duplicated",
                "wrong",
                "torn files",
                "reported (exit code: message)",
                "verdict",
            ],
            [r.row() for r in results],
        )
    )
    print("failures reported by the CLI (exit code: last stderr line), per drill:")
    for r in results:
        for f in sorted(set(r.failures)):
            if f.startswith("exit") and f != "exit 2":
                print(f"  {r.drill}: {f}")
    kills = sum(r.trials for r in results if r.drill.startswith("kill"))
    bad = [r.drill for r in results if r.problems]
    print(
        f"RESULT {sum(r.trials for r in results)} trials ({kills} kill -9), "
        f"{sum(r.lost for r in results)} candles lost, "
        f"{sum(r.duplicated for r in results)} duplicated, {sum(r.wrong for r in results)} "
        f"wrong, {sum(r.torn for r in results)} torn files; "
        f"{'all drills passed' if not bad else 'FAILED: ' + ', '.join(bad)} "
        f"({time.perf_counter() - t0:.0f} s; {QUIET['handler_errors']} replay handler errors "
        "from killed clients)"
    )


if __name__ == "__main__":
    main()
