"""Benchmark: ``coinpredict export`` for 50 symbols x 4 timeframes and ``status`` for 200 series.

Starts a private influxd, writes ``HISTORY`` candles per series (1m, 1h, 1d, 1w; 1m relative to
the real clock so it is inside the rolling retention) and a 24/14/8-step champion forecast per
non-1m series, then runs the real CLI as a subprocess under /usr/bin/time and prints wall time and
peak RSS (goals: export <= 2 s, status <= 0.5 s). Figures are recorded in docs/health.md.

    .venv/bin/python bench/publish.py [--symbols 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coinpredict.base.config import load_settings  # noqa: E402
from coinpredict.base.series import Series  # noqa: E402
from coinpredict.base.timeframes import TIMEFRAMES  # noqa: E402
from coinpredict.replay.influxd import start_influxd  # noqa: E402
from coinpredict.store.candles import CandleStore  # noqa: E402
from coinpredict.store.http import InfluxHTTP  # noqa: E402
from coinpredict.store.predictions import PredictionStore, StoredForecast  # noqa: E402
from coinpredict.store.setup import init_storage  # noqa: E402

TFS = ("1m", "1h", "1d", "1w")
HISTORY = 500


def _symbols(n: int) -> list[str]:
    return [f"C{i:03d}/USDT" for i in range(n)]


def _populate(settings, http: InfluxHTTP, symbols: list[str], now_ms: int) -> None:
    candles = CandleStore(http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    preds = PredictionStore(http, db=settings.influx_db)
    for k, sym in enumerate(symbols):
        for code in TFS:
            tf = TIMEFRAMES[code]
            s = Series(settings.exchange, sym, tf)
            last = tf.last_closed_open(now_ms)
            base = 10.0 + k
            rows = []
            for i in range(HISTORY):
                p = base + (i % 17) * 0.1
                rows.append((tf.add(last, -(HISTORY - 1 - i)), p, p + 0.5, p - 0.5, p + 0.1, 5.0))
            candles.write(s, rows)
            horizon = settings.policy(tf).horizon
            if code == "1m":
                continue
            ts = tuple(tf.add(last, i + 1) for i in range(horizon))
            close = tuple(base + 0.01 * i for i in range(horizon))
            preds.write(
                StoredForecast(
                    s, "champion", "naive", "v1", 0.8, last, ts[0], now_ms, ts, close,
                    tuple(c - 1 for c in close), tuple(c + 1 for c in close),
                    tuple(c - 2 for c in close), tuple(c + 2 for c in close),
                )
            )  # fmt: skip


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB, exit code) of one CLI run."""
    fmt = "%e %M"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", fmt, sys.executable, "-m", "coinpredict", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall, rss = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp:
        work = Path(tmp)
        influx = start_influxd(work / "influxd")
        try:
            symbols = _symbols(opts.symbols)
            env = {
                **os.environ,
                "COINPREDICT_CONFIG": "",
                "COINPREDICT_INFLUX_URL": influx.url,
                "COINPREDICT_STATE_DIR": str(work / "state"),
                "COINPREDICT_EXPORT_DIR": str(work / "www"),
                "COINPREDICT_SYMBOLS": ",".join(symbols),
                "COINPREDICT_TIMEFRAMES": ",".join(TFS),
            }
            settings = load_settings(environ=env)
            http = InfluxHTTP(influx.url)
            init_storage(settings, http)
            started = time.monotonic()
            _populate(settings, http, symbols, int(time.time() * 1000))
            series = len(symbols) * len(TFS)
            print(
                f"populated {series} series x {HISTORY} candles in "
                f"{time.monotonic() - started:.1f}s"
            )
            results = {}
            for label, args in (("export", ["export", "--json"]), ("status", ["status", "--json"])):
                runs = [_timed(args, env) for _ in range(opts.runs)]
                codes = {c for _, _, c in runs}
                walls = [w for w, _, _ in runs]
                rss = max(r for _, r, _ in runs)
                results[label] = (statistics.median(walls), min(walls), rss, codes)
                print(
                    f"{label:6s} {series} series: wall median {statistics.median(walls):.2f}s "
                    f"(best {min(walls):.2f}s), peak RSS {rss / 1024:.0f} MiB, exit {sorted(codes)}"
                )
            from coinpredict.base.clock import SystemClock
            from coinpredict.health.status import run_status
            from coinpredict.publish.export import export_once

            for label, fn in (
                ("export core", lambda: export_once(settings, SystemClock())),
                ("status core", lambda: run_status(settings, SystemClock())),
            ):
                walls = []
                for _ in range(opts.runs):
                    t = time.perf_counter()
                    fn()
                    walls.append(time.perf_counter() - t)
                print(
                    f"{label} (in-process, no interpreter start): {statistics.median(walls):.3f}s"
                )
            files = len(list((work / "www").glob("*.json")))
            size = sum(p.stat().st_size for p in (work / "www").glob("*.json"))
            print(f"export wrote {files} files, {size / 1e6:.1f} MB")
        finally:
            influx.stop()
    if any(codes - {0, 1, 2, 3} for *_, codes in results.values()) or results["export"][3] != {0}:
        print("unexpected exit codes: is the CLI importable?", file=sys.stderr)
        return 1
    ok = results["export"][0] <= 2.0 and results["status"][0] <= 0.5
    print("goals (export <= 2 s, status <= 0.5 s):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
