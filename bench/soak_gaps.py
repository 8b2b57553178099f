"""Benchmark: the 1m gap scan of the default deployment, 10 symbols x 180 days, read in full
versus counted per day (coinpredict/ingest/gaps.py ``stored_open_times``).

    nice -n 19 .venv/bin/python bench/soak_gaps.py [--symbols 10] [--days 180]

180 days of BTC/USDT 1m per symbol, built from the real 30-day file repeated (timestamps shifted
by 30 days each, each symbol scaled by its own factor), ending at the last closed minute now,
written into the 1m database made by ``coinpredict init``'s code; in each series 3 planted gaps
(one minute, an hour across midnight, a whole day). Timed per pass over all series (median of
3): the full scan (every open time read, as detect-gaps did before) and the day-counted scan,
each followed by ``missing_ranges``; the two must find the same ranges. Then the real CLI
(``coinpredict detect-gaps -t 1m --json``, wall incl. imports, peak RSS). Prints figures.
"""

from __future__ import annotations

import argparse
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

from coinpredict.base.clock import SystemClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES
from coinpredict.ingest.gaps import missing_ranges, stored_open_times
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage

SYMBOLS = [f"S{i:02d}/USDT" for i in range(100)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--days", type=int, default=180)
    args = ap.parse_args()
    header("gap scan: 1m, full read vs counted per day")
    m = TIMEFRAMES["1m"]
    base = read_rows(DATA / "BTC_USDT-1m.csv")
    now = SystemClock().now_ms()
    last = m.last_closed_open(now)
    period = len(base) * 60_000
    first = m.next_boundary(now - args.days * DAY_MS + HOUR_MS)
    shift = last - base[-1][0]
    rows = []
    for k in range(args.days * DAY_MS // period + 1, -1, -1):
        rows += [(r[0] + shift - k * period, *r[1:]) for r in base]
    rows = [r for r in rows if r[0] >= first]
    midnight = (last // DAY_MS - 20) * DAY_MS
    drop = {midnight - 40 * DAY_MS + 777 * 60_000}
    drop |= set(range(midnight - 30 * 60_000, midnight + 30 * 60_000, 60_000))
    drop |= set(range(midnight - 10 * DAY_MS, midnight - 9 * DAY_MS, 60_000))
    rows = [r for r in rows if r[0] not in drop]
    symbols = SYMBOLS[: args.symbols]
    with tempdir() as work, influxd(work) as proc:
        env = env_for(proc.url, work, symbols=",".join(symbols), timeframes="1m")
        env["COINPREDICT_1M_WINDOW"] = f"{args.days}d"
        settings = settings_for(env)
        http = InfluxHTTP(proc.url)
        init_storage(settings, http)
        store = CandleStore(http, db=settings.influx_db, db_1m=settings.influx_db_1m)
        series = [Series("binance", s, m) for s in symbols]
        t0 = time.perf_counter()
        for i, s in enumerate(series):
            f = 1 + i / 10
            store.write(s, [(r[0], r[1] * f, r[2] * f, r[3] * f, r[4] * f, r[5]) for r in rows])
        print(f"wrote {len(series)} x {len(rows):,} 1m candles in {time.perf_counter() - t0:.0f} s")
        wait_idle(proc.process.pid)
        start, end = rows[0][0], last
        results = {}
        out = []
        for name, scan in (
            ("full read (before)", lambda s: store.timestamps(s, start, end)),
            ("counted per day (after)", lambda s: stored_open_times(s, store, start, end)),
        ):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                found = [missing_ranges(scan(s), m, start, end) for s in series]
                times.append(time.perf_counter() - t0)
            results[name] = found
            n = sum(r.count for f in found for r in f)
            out.append([name, f"{statistics.median(times):.2f} s", f"{min(times):.2f} s", n])
        same = len({repr(v) for v in results.values()}) == 1
        cli = run_cli(["detect-gaps", "-t", "1m", "--json"], env, work=work)
        http.close()
    print(table(["scan of all series + missing_ranges", "median of 3", "min", "missing"], out))
    print(f"same ranges from both scans: {same}")
    print(
        f"CLI detect-gaps -t 1m --json: {cli.wall_s:.2f} s wall, {cli.maxrss_mb:.0f} MB peak RSS, exit {cli.rc}"
    )


if __name__ == "__main__":
    main()
