"""Benchmark: the hourly cycle (ingest -> predict -> export) for 50 series x 1h, and the
new-candle trigger over a simulated day.

    .venv/bin/python bench/cycle.py [--series 50] [--hours 24] [--latency 50] [--markets 3500]

Data: DATA holds 12 real 1h pairs; the other 38 series are copies of the real files under other
base names (BTC2, ETH2, ..., BTC5, ETH5 -- same candles, another symbol), so that 50 series run.
The replay gets the last 1,000 candles of each file; InfluxDB is preloaded directly (CandleStore)
with the 20,000 candles before the day starts, and every series gets a ridge champion trained
beforehand (train + promote through the registry; ``predict`` reads 20,000 candles per series).

The day: 24 cycles at HH:02 on a FixedClock shared by the replay (``coinpredict replay serve
--now``, a separate process restarted for each cycle, as the exchange would be) and the core
calls
(``run_candle_job("ingest")``, ``run_predict_job``, ``run_export``), the last one 2 minutes
after the close of the files' last candle (2022-09-30 23:00). 40% of the series ("quiet") have
replay files that end 5 h into the day, so from then on they get no new candle: predict skips
them ("N of M series skipped"). Cycle 1 is the timed full cycle: every series has new candles
(2 each), the replay adds ``--latency`` ms to every request, ccxt's limiter is on, the heavy
imports are already done (each CLI process pays them on top: see bench/rss.py).
Bound = series / 50 req/s (at least one klines request per series at Binance's request budget)
+ one latency + the pure model time (forecast_for_series over the same frames); goal: the cycle
within 1.2 x the bound. The replay lists ``--markets`` symbols in exchangeInfo (Binance's ~3,500 by
default; the series are picked as ``top:N:USDT`` from its 24 h tickers) and reports the requests
it served when it stops: the exchangeInfo requests of the whole day are counted from them (the
market list is cached in the state dir for a day). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import time

from common import (
    CLI,
    DATA,
    H,
    cpu_seconds,
    env_for,
    header,
    influxd,
    read_rows,
    settings_for,
    symbols_1h,
    table,
    tempdir,
    write_rows,
)

from coinpredict.base.clock import FixedClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage

TF = TIMEFRAMES["1h"]
HISTORY = 20_000


def universe(n: int) -> list[tuple[str, str]]:
    """(symbol base, real base it copies) for n series."""
    real = symbols_1h()
    out = [(b, b) for b in real]
    k = 2
    while len(out) < n:
        for b in real:
            if len(out) >= n:
                break
            out.append((f"{b}{k}", b))
        k += 1
    return out[:n]


@contextlib.contextmanager
def replay_process(data_dir, now_iso: str, latency: float, markets: int, served: list):  # noqa: ANN001,ANN201
    """The replay as its own process; on exit its "requests served" line is appended to
    ``served``."""
    proc = subprocess.Popen(
        [
            *CLI,
            "replay",
            "serve",
            "--data",
            str(data_dir),
            "--now",
            now_iso,
            "--latency",
            str(latency),
            "--markets",
            str(markets),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")},
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"replay did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        served.extend(line for line in err.splitlines() if "requests served" in line)


def permissive_gate():  # noqa: ANN201
    import dataclasses

    from coinpredict.forecast.registry import Gate

    wanted = {
        "min_samples": 0,
        "coverage_tolerance": 1,
        "coverage95_tolerance": 1,
        "max_relative_mae": 9,
        "margin": -9,
        "max_relative_width": 9,
        "max_relative_interval_score": 9,
    }
    names = {f.name for f in dataclasses.fields(Gate)}
    return Gate(**{k: v for k, v in wanted.items() if k in names})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--latency", type=float, default=50.0)
    parser.add_argument("--markets", type=int, default=3500, help="symbols the replay lists")
    parser.add_argument(
        "--mode",
        choices=("cycle", "commands"),
        default="cycle",
        help="cycle: run_cycle (coinpredict cycle, what systemd runs); commands: ingest, "
        "predict and export one after another",
    )
    args = parser.parse_args()
    header("hourly cycle: ingest -> predict -> export")
    t_setup = time.perf_counter()
    uni = universe(args.series)
    real_rows = {b: read_rows(DATA / f"{b}_USDT-1h.csv") for b in {r for _, r in uni}}
    t_end = min(rows[-1][0] for rows in real_rows.values())  # open of the last candle
    d0 = t_end - (args.hours - 1) * H  # cycle i runs at d0 + i h + 1 h + 2 min
    quiet = {b for b, _ in uni[len(uni) - int(len(uni) * 0.4) :]}
    print(
        f"{len(uni)} series ({len(real_rows)} real files, {len(uni) - len(real_rows)} copies); "
        f"{len(quiet)} quiet ones end at {iso(d0 + 4 * H)}; day {iso(d0 + H)} .. "
        f"{iso(t_end + H)}"
    )

    from coinpredict.forecast import registry
    from coinpredict.jobs.cycle import run_cycle
    from coinpredict.jobs.runner import run_candle_job, run_predict_job
    from coinpredict.jobs.runner import run_export_job as run_export
    from coinpredict.serving.predict import models_dir

    with tempdir() as work, influxd(work) as proc:
        replay_dir = work / "replay"
        replay_dir.mkdir()
        for base, src in uni:
            rows = [r for r in real_rows[src] if r[0] <= (d0 + 4 * H if base in quiet else t_end)]
            write_rows(replay_dir / f"{base}_USDT-1h.csv", rows[-1000:])
        env = env_for(proc.url, work, symbols=f"top:{len(uni)}:USDT", db="cycle")
        http = InfluxHTTP(proc.url)
        settings = settings_for(env)
        init_storage(settings, http)
        store = CandleStore(http, db=settings.influx_db, db_1m=settings.influx_db_1m)
        import polars as pl

        from coinpredict.store.candles import SCHEMA

        frames = {}
        for base, src in uni:
            rows = [r for r in real_rows[src] if r[0] <= d0 - 2 * H][-HISTORY:]
            store.write(Series("binance", f"{base}/USDT", TF), rows)
            frames[base] = pl.DataFrame(rows, schema=SCHEMA, orient="row")
        mdir = models_dir(settings)
        gate = permissive_gate()
        for base, _ in uni:
            registry.train_series(mdir, f"{base}/USDT", TF, frames[base], 24, origins=3)
            registry.promote(mdir, f"{base}/USDT", TF, gate=gate)
        # pure model time, the same work predict does per series (warm: imports done)
        t0 = time.perf_counter()
        for base, _ in uni:
            registry.forecast_for_series(mdir, f"{base}/USDT", TF, frames[base], 24).check()
        model_s = time.perf_counter() - t0
        print(
            f"setup (preload {sum(f.height for f in frames.values()):,} candles, train + "
            f"promote {len(uni)} ridge champions) {time.perf_counter() - t_setup:.1f} s; "
            f"pure model time for {len(uni)} series {model_s:.2f} s"
        )
        del frames
        clock = FixedClock(d0 + H + 2 * 60_000)
        rows = []
        served: list[str] = []
        timed = []  # per cycle: ingest, predict, export s, pages, CPU s (us, influxd), series w/ new
        for i in range(args.hours):
            # the replay runs in its own process (as the exchange would), its clock frozen at
            # this cycle's instant: in-process, its handler threads would share our GIL
            with replay_process(
                replay_dir, iso(clock.now_ms()), args.latency, args.markets, served
            ) as url:
                settings = settings_for(dict(env, COINPREDICT_EXCHANGE_URL=url))
                t0 = time.perf_counter()
                cpu0, influx0 = time.process_time(), cpu_seconds(proc.process.pid)
                if args.mode == "cycle":  # one process, stages overlapped (coinpredict cycle)
                    res = run_cycle(settings, clock=clock)
                    t3 = time.perf_counter()
                    ing, pred, exp = res.ingest, res.predict, res.export
                    assert ing is not None and pred is not None and exp is not None, res.errors
                    t1 = t0 + res.done_s["ingest"]
                    t2 = t0 + res.done_s["predict"]
                else:  # the three commands one after another
                    ing = run_candle_job("ingest", settings, clock=clock)
                    t1 = time.perf_counter()
            if args.mode != "cycle":
                pred = run_predict_job(settings, clock=clock)
                t2 = time.perf_counter()
                exp = run_export(settings, clock)
                t3 = time.perf_counter()
            new = sum(1 for o in ing.outcomes if o.detail.stored)
            pages = sum(o.detail.pages for o in ing.outcomes)
            note = next((n for n in pred.notes if "skipped" in n), "")
            rows.append(
                [
                    i + 1,
                    iso(clock.now_ms())[11:16],
                    pages,
                    new,
                    sum(o.detail.stored for o in ing.outcomes),
                    note,
                    len(pred.failed),
                    len(exp.written),
                    len(getattr(exp, "unchanged", ())),
                    f"{t1 - t0:.2f}",
                    f"{t2 - t1:.2f}",
                    f"{t3 - t2:.2f}",
                    f"{t3 - t0:.2f}",
                    ing.exit_code,
                    pred.exit_code,
                    int(exp.exit_code),
                ]
            )
            timed.append(
                (
                    t1 - t0,
                    t2 - t1,
                    t3 - t2,
                    pages,
                    time.process_time() - cpu0,
                    cpu_seconds(proc.process.pid) - influx0,
                    new,
                )
            )
            clock.advance(H)
        http.close()
    print(
        table(
            [
                "cycle",
                "at",
                "pages",
                "series w/ new",
                "candles",
                "predict",
                "pred failed",
                "files written",
                "files unchanged",
                "ingest s",
                "predict s",
                "export s",
                "cycle s",
                "rc ing",
                "rc pred",
                "rc exp",
            ],
            rows,
        )
    )
    n = len(uni)
    bound = n / 50 + args.latency / 1000 + model_s
    how = (
        "one process, stages overlapped: ingest done at, then predict done, then export done"
        if args.mode == "cycle"
        else "three commands in a row: ingest + predict + export"
    )

    def result(label: str, picked: list[tuple]) -> None:
        ingest_s, predict_s, export_s, klines, cpu_us, cpu_influx, _ = sorted(
            picked, key=lambda t: t[0] + t[1] + t[2]
        )[len(picked) // 2]  # the median cycle
        total = ingest_s + predict_s + export_s
        print(
            f"RESULT {label} ({args.mode}), {n} series, {args.latency:.0f} ms latency ({how}): "
            f"{ingest_s:.2f} s ({klines} pages) + {predict_s:.2f} s + {export_s:.2f} s = "
            f"{total:.2f} s; bound {n} / 50 req/s + {args.latency / 1000:.2f} s + model "
            f"{model_s:.2f} s = {bound:.2f} s -> {total / bound:.2f}x (goal <= 1.2x)"
        )
        print(
            f"     CPU: this process {cpu_us:.2f} s, influxd {cpu_influx:.2f} s (wall "
            f"{total:.2f} s, 2 cores); ingest alone vs its part of the bound "
            f"({n / 50 + args.latency / 1000:.2f} s): "
            f"{ingest_s / (n / 50 + args.latency / 1000):.2f}x"
        )

    info = [int(x.split("exchangeInfo ")[1].split(",")[0]) for x in served if "exchangeInfo " in x]
    print(
        f"RESULT markets: the replay listed {args.markets} symbols; exchangeInfo requests over "
        f"{len(rows)} cycles: {sum(info)} (per cycle: {info or 'none'})"
    )
    result("cycle 1, cold (no cached model windows)", timed[:1])
    steady = [t for t in timed[1:] if t[6] == n]
    if steady:
        result(
            f"steady cycle (median of cycles 2-{len(steady) + 1}: every series has a new "
            f"candle, model windows cached)",
            steady,
        )
    print(
        f"     ccxt's own limiter at rateLimit 50 ms would need {n * 0.05:.2f} s for the "
        f"{n} requests"
    )
    pred_skipped = sum(int(r[5].split()[0]) for r in rows if r[5][:1].isdigit())
    pred_total = sum(int(r[5].split()[2]) for r in rows if r[5][:1].isdigit())
    kept = sum(r[8] for r in rows)
    files = sum(r[7] + r[8] for r in rows)
    print(
        f"RESULT new-candle trigger over {len(rows)} cycles: predict skipped {pred_skipped} of "
        f"{pred_total} series-runs (last cycle: {rows[-1][5]!r}); export left {kept} of "
        f"{files} files unchanged"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
