"""Benchmark: detect-gaps over 5 years of 1h and 180 days of 1m candles.

    .venv/bin/python bench/gaps.py

* 1h: the real BTC/USDT 1h file (44,773 candles, 2017-08 .. 2022-09, 127 missing candles in 27
  real exchange gaps), shifted by whole hours so that its last candle is the last closed hour now.
* 1m: 180 days of BTC/USDT 1m built from the real 30-day file (43,200 candles) repeated six times
  with timestamps shifted by 30 days each, ending at the last closed minute now; only candles
  inside the 1m database's retention (180 d minus the 1 h ingest margin) are written (~259,000).
Both are written with CandleStore into databases made by ``coinpredict init``'s code. Timed:
the core (``run_gaps_job``, median of 3, FixedClock at "now") and the real CLI
(``coinpredict detect-gaps -t TF --json``, wall from fork to exit incl. imports, peak RSS).
Goals: <= 1 s (1h) and <= 5 s (1m). Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import time

from common import (
    DATA,
    env_for,
    header,
    influxd,
    read_rows,
    run_cli,
    settings_for,
    table,
    tempdir,
    wait_idle,
)

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES
from coinpredict.jobs.runner import run_gaps_job
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage


def main() -> None:
    header("detect-gaps")
    rows_1h = read_rows(DATA / "BTC_USDT-1h.csv")
    rows_1m = read_rows(DATA / "BTC_USDT-1m.csv")
    now = SystemClock().now_ms()
    h, m = TIMEFRAMES["1h"], TIMEFRAMES["1m"]
    shift_h = h.last_closed_open(now) - rows_1h[-1][0]
    data_1h = [(r[0] + shift_h, *r[1:]) for r in rows_1h]
    period = len(rows_1m) * 60_000  # the file is contiguous: 30 days
    last_m = m.last_closed_open(now)
    base_shift = last_m - rows_1m[-1][0]
    floor = m.next_boundary(now - 180 * DAY_MS + HOUR_MS)
    data_1m = []
    for k in range(6, -1, -1):
        data_1m += [(r[0] + base_shift - k * period, *r[1:]) for r in rows_1m]
    data_1m = [r for r in data_1m if r[0] >= floor]
    out = []
    with tempdir() as work, influxd(work) as proc:
        env = env_for(proc.url, work, symbols="BTC/USDT", timeframes="1h,1m")
        settings = settings_for(env)
        http = InfluxHTTP(proc.url)
        init_storage(settings, http)
        store = CandleStore(http, db=settings.influx_db, db_1m=settings.influx_db_1m)
        t0 = time.perf_counter()
        store.write(Series("binance", "BTC/USDT", h), data_1h)
        store.write(Series("binance", "BTC/USDT", m), data_1m)
        print(
            f"wrote {len(data_1h):,} 1h + {len(data_1m):,} 1m candles in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        wait_idle(proc.process.pid)
        clock = FixedClock(now)
        for tf, n, goal in (("1h", len(data_1h), 1.0), ("1m", len(data_1m), 5.0)):
            env_tf = dict(env, COINPREDICT_TIMEFRAMES=tf)
            s_tf = settings_for(env_tf)
            times, report, found = [], None, []
            for _ in range(3):
                t0 = time.perf_counter()
                report, found = run_gaps_job(s_tf, refill=False, clock=clock)
                times.append(time.perf_counter() - t0)
            missing = sum(r.count for f in found for r in f.missing)
            ranges = sum(len(f.missing) for f in found)
            cli = run_cli(["detect-gaps", "-t", tf, "--json"], env_tf, work=work)
            try:
                cli_missing = sum(
                    r["count"] for s in json.loads(cli.out)["series"] for r in s["missing"]
                )
            except (ValueError, KeyError):
                cli_missing = "?"
            out.append(
                [
                    tf,
                    f"{n:,}",
                    f"{missing} in {ranges} ranges",
                    f"{statistics.median(times):.2f} s",
                    f"{cli.wall_s:.2f} s",
                    cli_missing,
                    f"{cli.maxrss_mb:.0f} MB",
                    f"<= {goal:.0f} s",
                    cli.rc,
                ]
            )
        http.close()
    print(
        table(
            [
                "tf",
                "candles",
                "missing found (core)",
                "core (median of 3)",
                "CLI wall",
                "missing (CLI)",
                "CLI peak RSS",
                "goal",
                "exit",
            ],
            out,
        )
    )
    print("(the CLI's exit code is 0 even with missing candles: detect-gaps reports them)")


if __name__ == "__main__":
    main()
