"""Benchmark: page BTC/USDT + ETH/USDT 1h history through the adapter from the replay exchange.

Prints figures, asserts nothing. Reference (freqtrade): BTC+ETH 1h 2020-01-01 -> 2022-10-01,
48,128 candles in 53 requests, 4.4 s of which ~2 s imports. Goal: wall time <= 1.1 x pages x
max(rateLimit, latency).

    .venv/bin/python bench/backfill_fetch.py [--data DIR] [--concurrency N ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

T_START = time.perf_counter()
import ccxt  # noqa: E402,F401  (timed: the import is part of a real run)

IMPORT_S = time.perf_counter() - T_START

from coinpredict.base.clock import FixedClock  # noqa: E402
from coinpredict.base.timeframes import TIMEFRAMES, iso, parse_instant  # noqa: E402
from coinpredict.exchange import ExchangeAdapter  # noqa: E402
from coinpredict.replay import ReplayServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "tests" / "data"


def run(
    data: Path,
    since: int,
    until: int,
    now: int,
    latency_ms: float,
    concurrency: int,
    symbols: list[str],
) -> None:
    clock = FixedClock(now)
    tf = TIMEFRAMES["1h"]
    with ReplayServer(data, clock=clock, latency_ms=latency_ms) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, concurrency=concurrency)
        try:
            adapter.symbols()  # load markets outside the timed part, as ingest does once
            server.reset_counters()
            pages = candles = 0
            t0 = time.perf_counter()
            for symbol in symbols:
                for page in adapter.fetch_closed(symbol, tf, since, until):
                    pages += 1
                    candles += len(page.candles)
            wall = time.perf_counter() - t0
            bound = 1.1 * pages * max(adapter.rate_limit_ms, latency_ms) / 1000
            print(
                f"latency {latency_ms:>4.0f} ms  concurrency {concurrency}  "
                f"pages {pages:>3}  requests {server.counts['total']:>3} "
                f"(klines {server.counts['klines']}, time {server.counts['time']})  "
                f"candles {candles:>6}  wall {wall:6.2f} s  bound {bound:6.2f} s "
                f"({'within' if wall <= bound else 'OVER'})  {candles / wall:>8.0f} candles/s"
            )
        finally:
            adapter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.is_dir() else SAMPLES)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 1])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 50.0])
    args = parser.parse_args()
    if args.data.resolve() == SAMPLES:  # the samples hold 2018-01-01 .. 2019-05-31 for both pairs
        since, until = (
            parse_instant("2018-01-01", setting="since"),
            parse_instant("2019-05-31T23:00:00Z", setting="until"),
        )
    else:
        since, until = (
            parse_instant("2020-01-01", setting="since"),
            parse_instant("2022-09-30T23:00:00Z", setting="until"),
        )
    now = until + 90 * 60_000
    print(
        f"data {args.data}  BTC/USDT+ETH/USDT 1h {iso(since)} .. {iso(until)}  "
        f"(import ccxt {IMPORT_S:.2f} s, rateLimit {ccxt.binance().rateLimit} ms)"
    )
    for latency in args.latency:
        for concurrency in args.concurrency:
            run(args.data, since, until, now, latency, concurrency, ["BTC/USDT", "ETH/USDT"])
    print(f"total process time {time.perf_counter() - T_START:.2f} s")


if __name__ == "__main__":
    main()
