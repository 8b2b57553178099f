"""Benchmark: InfluxDB write/read throughput of CandleStore vs raw /write, and bytes per candle.

    .venv/bin/python bench/influx_write.py [--rounds 3]

1. Every real 1h candle of DATA (12 pairs, 397,648 candles; >= 200k required) written twice per
   round into fresh databases created like ``coinpredict init`` does (52w shards):
   * raw:   the line protocol CandleStore would send, prepared beforehand, POSTed with
            ``InfluxHTTP.write`` in batches of 5,000 (only the HTTP round trips are timed);
   * store: ``CandleStore.write(series, rows)`` from the parsed float rows (formatting + HTTP).
   The order alternates between rounds; the best round of each is reported, with the ratio
   store/raw (goal >= 0.8).
2. ``CandleStore.read`` of 20,000 consecutive BTC/USDT 1h candles (median of 7, after 1 warm-up).
3. Bytes per stored candle: a separate influxd with the cache snapshot after 1 s of write
   silence and a full compaction after 2 s (defaults 10 min / 4 h). After writing, wait until
   the WAL is empty and the TSM files stop changing, then ``du`` of the database's data dir
   divided by the number of candles (compressed TSM incl. index; the WAL is reported too).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import (
    DATA,
    H,
    du_bytes,
    header,
    influxd,
    read_rows,
    symbols_1h,
    tempdir,
    wait_idle,
)

from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.store.candles import BATCH, CandleStore
from coinpredict.store.escape import ident
from coinpredict.store.http import InfluxHTTP

TF = TIMEFRAMES["1h"]


def load() -> dict[str, list]:
    return {b: read_rows(DATA / f"{b}_USDT-1h.csv") for b in symbols_1h()}


def create_db(http: InfluxHTTP, name: str) -> None:
    http.query(f"DROP DATABASE {ident(name)}", write=True)
    http.query(f"CREATE DATABASE {ident(name)} WITH SHARD DURATION 52w", write=True)


def raw_batches(store: CandleStore, data: dict[str, list]) -> dict[str, list[bytes]]:
    """The exact bytes CandleStore.write would send, 5,000 lines per request."""
    from coinpredict.store.escape import field_float

    out: dict[str, list[bytes]] = {}
    for base, rows in data.items():
        prefix = store.line_prefix(Series("binance", f"{base}/USDT", TF))
        lines = [
            f"{prefix}open={field_float(o)},high={field_float(h)},low={field_float(lo)},"
            f"close={field_float(c)},volume={field_float(v)} {ts}"
            for ts, o, h, lo, c, v in rows
        ]
        out[base] = ["\n".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)]
    return out


class TimedHTTP(InfluxHTTP):
    """InfluxHTTP that adds up the time spent inside write() (the HTTP round trips)."""

    spent = 0.0

    def write(self, db: str, lines: bytes, *, rp: str | None = None) -> None:
        t0 = time.perf_counter()
        try:
            super().write(db, lines, rp=rp)
        finally:
            self.spent += time.perf_counter() - t0


def one_round(
    http: TimedHTTP, rnd: int, data: dict[str, list], batches: dict[str, list[bytes]]
) -> tuple[float, float, float]:
    """Raw and store writes interleaved pair by pair (so that drifting server state or load
    hits both alike), each into its own fresh database. -> (raw s, store s, store's HTTP s)."""
    raw_db, store_db = f"raw{rnd}", f"store{rnd}"
    create_db(http, raw_db)
    create_db(http, store_db)
    store = CandleStore(http, db=store_db, db_1m=store_db + "_1m")
    raw_s = store_s = store_http = 0.0
    for i, (base, rows) in enumerate(data.items()):
        for kind in ("raw", "store") if (i + rnd) % 2 == 0 else ("store", "raw"):
            if kind == "raw":
                t0 = time.perf_counter()
                for body in batches[base]:
                    http.write(raw_db, body)
                raw_s += time.perf_counter() - t0
            else:
                http.spent = 0.0
                t0 = time.perf_counter()
                store.write(Series("binance", f"{base}/USDT", TF), rows)
                store_s += time.perf_counter() - t0
                store_http += http.spent
    return raw_s, store_s, store_http


def bytes_per_candle(work, data: dict[str, list]) -> None:  # noqa: ANN001
    tuned = {
        "cache-snapshot-write-cold-duration": '"1s"',
        "compact-full-write-cold-duration": '"2s"',
    }
    with influxd(work / "compact", tuned) as proc:
        http = InfluxHTTP(proc.url)
        create_db(http, "size")
        store = CandleStore(http, db="size", db_1m="size_1m")
        n = 0
        for base, rows in data.items():
            n += store.write(Series("binance", f"{base}/USDT", TF), rows)
        data_dir = proc.workdir / "data" / "size"
        wal_dir = proc.workdir / "wal" / "size"
        last, stable_since, t0 = -1, time.monotonic(), time.monotonic()
        while time.monotonic() - t0 < 90:
            time.sleep(1)
            size = du_bytes(data_dir)
            wal = du_bytes(wal_dir)
            if size != last:
                last, stable_since = size, time.monotonic()
            elif wal < 64 * 1024 and time.monotonic() - stable_since >= 4:
                break
        tsm = sum(1 for _ in data_dir.rglob("*.tsm"))
        shards = sum(1 for p in data_dir.glob("*/*") if p.is_dir())
        stats = http.query("SHOW STATS FOR 'shard'")
        disk = sum(
            s["values"][0][s["columns"].index("diskBytes")]
            for s in stats
            if s.get("tags", {}).get("database") == "size" and "diskBytes" in s["columns"]
        )
        print(
            f"bytes per candle: {n:,} candles -> data dir {last:,} B (du, {shards} shards, "
            f"{tsm} TSM files) = {last / n:.1f} B/candle; WAL left {du_bytes(wal_dir):,} B; "
            f"SHOW STATS diskBytes {disk:,} B = {disk / n:.1f} B/candle "
            f"(raw CSV {sum((DATA / f'{b}_USDT-1h.csv').stat().st_size for b in data) / n:.1f}"
            f" B/candle)"
        )
        http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    header("InfluxDB write/read")
    data = load()
    n = sum(len(r) for r in data.values())
    print(f"candles: {n:,} (1h, {len(data)} pairs); batches of {BATCH}")
    with tempdir() as work, influxd(work) as proc:
        http = TimedHTTP(proc.url)
        print(f"influxd {http.ping()} at {proc.url}")
        pid = proc.process.pid
        store0 = CandleStore(http, db="x", db_1m="x_1m")
        t0 = time.perf_counter()
        batches = raw_batches(store0, data)
        fmt_s = time.perf_counter() - t0
        raw_t, store_t, http_t = [], [], []
        for rnd in range(args.rounds):
            wait_idle(pid)  # influxd compacts after big writes: start each round idle
            raw_s, store_s, in_http = one_round(http, rnd, data, batches)
            raw_t.append(raw_s)
            store_t.append(store_s)
            http_t.append(in_http)
            print(
                f"round {rnd + 1}: raw {n / raw_s:>9,.0f} candles/s ({raw_s:.2f} s)  "
                f"store {n / store_s:>9,.0f} candles/s ({store_s:.2f} s, of which "
                f"{in_http:.2f} s waiting for /write, {store_s - in_http:.2f} s "
                f"building lines in Python)  ratio {raw_s / store_s:.2f}"
            )
            http.query(f"DROP DATABASE raw{rnd}", write=True)
            if rnd:
                http.query(f"DROP DATABASE store{rnd}", write=True)
        ratios = sorted(r / s for r, s in zip(raw_t, store_t, strict=True))
        raw_best, store_best = min(raw_t), min(store_t)
        nb = sum(len(b) for b in batches.values())
        print(
            f"line-protocol formatting alone (Python, {nb} batches): "
            f"{fmt_s:.2f} s = {n / fmt_s:,.0f} candles/s"
        )
        print(
            f"RESULT write: CandleStore.write {n / store_best:,.0f} candles/s vs raw /write "
            f"{n / raw_best:,.0f} candles/s (best rounds) -> ratio, median of the interleaved "
            f"rounds, {ratios[len(ratios) // 2]:.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f}; "
            f"goal >= 0.8)"
        )

        # reading 20,000 1h candles
        store = CandleStore(http, db="store0", db_1m="store0_1m")
        btc = Series("binance", "BTC/USDT", TF)
        rows = data["BTC"] if "BTC" in data else next(iter(data.values()))
        k = min(20_000, len(rows))
        start, end = rows[-k][0], rows[-1][0]
        got = store.read(btc, start, end)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            got = store.read(btc, start, end)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw = http.query(
            f"SELECT open,high,low,close,volume FROM candles WHERE symbol='BTC/USDT' AND "
            f"timeframe='1h' AND time >= {start}ms AND time <= {end}ms",
            db="store0",
        )
        raw_q = time.perf_counter() - t0
        print(
            f"RESULT read: CandleStore.read of {got.height:,} 1h candles median "
            f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f} ms); "
            f"the bare InfluxHTTP.query {raw_q * 1000:.0f} ms "
            f"({len(raw[0]['values']):,} rows) (BENCHMARKS: 80 ms)"
        )
        assert (end - start) // H + 1 >= got.height
        http.close()
        bytes_per_candle(work, data)


if __name__ == "__main__":
    main()
