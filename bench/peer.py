"""Benchmark: `coinpredict backfill` side by side with freqtrade's `download-data`, one run.

    .venv/bin/python bench/peer.py [--runs 3] [--latencies 0,50] [--venv DIR]

freqtrade==2026.9 is installed with pip into its own venv under the temporary directory (or the
one given with ``--venv``, kept between runs of the bench); it is never a project dependency.
One replay exchange (in this process, the weight limiter off so that runs do not share a
minute's budget; ``--markets`` symbols listed, default Binance's ~3,500) serves the same candles
to both: the 1h files of DATA (12 pairs of ../shared/data), shifted by whole weeks to end now.
For each latency, the two tools run alternately (coinpredict first in even runs, freqtrade first
in odd ones), ``--runs`` times each, each run into a fresh database / data directory:

* coinpredict: ``coinpredict backfill -t 1h`` for the 12 pairs (full history, from each pair's
  first candle) into a private influxd;
* freqtrade: ``freqtrade download-data --timeframes 1h --timerange 20100101-`` for the same pairs
  (its default OHLCV format), its ccxt pointed at the replay through ``ccxt_config`` ``urls``.

Per run: wall (fork to exit), CPU (user + system of the command; for coinpredict also influxd's
CPU from before the run until it is idle again), peak RSS (GNU time), requests served by the
replay. Stored data is checked against the replay's candles bit for bit (coinpredict: InfluxDB;
freqtrade: its files, read with pandas in its venv). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    CLI,
    DATA,
    bits,
    cpu_seconds,
    env_for,
    header,
    influxd,
    loadavg,
    symbols_1h,
    table,
    tempdir,
    wait_idle,
)

from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.replay.server import ReplayServer

FREQTRADE = "freqtrade==2026.9"
TF = TIMEFRAMES["1h"]

DUMP = """
import json, sys
import pandas as pd
df = pd.read_feather(sys.argv[1]) if sys.argv[1].endswith(".feather") else pd.read_json(sys.argv[1])
ts = ((df["date"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1ms")).tolist()
cols = [df[c].astype("float64").tolist() for c in ("open", "high", "low", "close", "volume")]
json.dump([[t, *vals] for t, *vals in zip(ts, *cols)], sys.stdout)
"""


def freqtrade_venv(work: Path, given: str | None) -> Path:
    """The venv with freqtrade: ``given``, else a new one under ``work`` (pip install)."""
    venv = Path(given) if given else work / "ftvenv"
    exe = venv / "bin" / "freqtrade"
    if exe.exists():
        return venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", FREQTRADE],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not exe.exists():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"cannot install {FREQTRADE} into {venv}:\n{tail}")
    return venv


def ft_config(path: Path, url: str, pairs: list[str]) -> None:
    import ccxt

    from coinpredict.exchange.adapter import rebase_urls

    urls = {"api": rebase_urls(ccxt.binance().urls["api"], url)}
    ccxt_cfg = {"urls": urls, "options": {"fetchMarkets": {"types": ["spot"]}}}
    config = {
        "trading_mode": "spot",
        "stake_currency": "USDT",
        "dry_run": True,
        "exchange": {
            "name": "binance",
            "key": "",
            "secret": "",
            "ccxt_config": ccxt_cfg,
            "ccxt_async_config": ccxt_cfg,
            "pair_whitelist": pairs,
        },
        "pairlists": [{"method": "StaticPairList"}],
    }
    path.write_text(json.dumps(config, indent=2))


def timed(cmd: list[str], env: dict[str, str], cwd: Path, out: Path) -> dict:
    """Run under GNU time: wall, user + system CPU, peak RSS."""
    stats = out.with_suffix(".time")
    t0 = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", str(stats), *cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    out.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    user, system, rss_kb = stats.read_text().split()[-3:]
    return {
        "rc": done.returncode,
        "wall": wall,
        "cpu": float(user) + float(system),
        "rss": int(rss_kb) / 1024,
        "out": done.stdout,
        "err": done.stderr,
    }


def expected(server: ReplayServer, base: str, now_ms: int) -> list[tuple]:
    s = server.data.get(f"{base}USDT", "1h")
    assert s is not None
    return [
        (t, *(float(x) for x in row))
        for t, row in zip(s.ts, s.rows, strict=True)
        if TF.is_closed(t, now_ms)
    ]


def check(got: list, want: list[tuple]) -> str:
    """'exact', or what differs. A tool may leave out the newest closed candle(s)."""
    if not got:
        return "nothing stored"
    g = [bits(r) for r in got]
    w = [bits(r) for r in want]
    if len(set(r[0] for r in g)) != len(g):
        return "duplicates"
    if g != w[: len(g)]:
        return "differs"
    short = len(w) - len(g)
    return "exact" if short == 0 else f"exact, newest {short} missing"


def run_coinpredict(work: Path, proc, server, bases: list[str], name: str) -> dict:  # noqa: ANN001
    run_dir = work / name
    run_dir.mkdir()
    env = env_for(
        proc.url,
        run_dir,
        symbols=",".join(f"{b}/USDT" for b in bases),
        db=name.replace("-", "_"),
        COINPREDICT_EXCHANGE_URL=server.url,
    )
    child = {**{k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")}, **env}
    init = subprocess.run([*CLI, "init"], env=child, capture_output=True, text=True)
    if init.returncode != 0:
        raise SystemExit(f"coinpredict init failed: {init.stderr}")
    wait_idle(proc.process.pid)
    server.reset_counters()
    influx0 = cpu_seconds(proc.process.pid)
    r = timed([*CLI, "backfill", "-t", "1h", "--json"], child, run_dir, run_dir / "out.txt")
    wait_idle(proc.process.pid)
    r["influx_cpu"] = cpu_seconds(proc.process.pid) - influx0
    r["requests"] = server.counts["total"]
    now = int(time.time() * 1000)
    from coinpredict.store.candles import CandleStore
    from coinpredict.store.http import InfluxHTTP

    http = InfluxHTTP(proc.url)
    store = CandleStore(http, db=env["COINPREDICT_INFLUX_DB"], db_1m="unused")
    results = {
        check(store.read(Series("binance", f"{b}/USDT", TF)).rows(), expected(server, b, now))
        for b in bases
    }
    http.close()
    r["data"] = ", ".join(sorted(results))
    return r


def run_freqtrade(work: Path, venv: Path, server, bases: list[str], name: str) -> dict:  # noqa: ANN001
    run_dir = work / name
    run_dir.mkdir()
    pairs = [f"{b}/USDT" for b in bases]
    ft_config(run_dir / "config.json", server.url, pairs)
    cmd = [
        str(venv / "bin" / "freqtrade"),
        "download-data",
        "--config",
        str(run_dir / "config.json"),
        "--userdir",
        str(run_dir / "user_data"),
        "--datadir",
        str(run_dir / "data"),
        "--timeframes",
        "1h",
        "--timerange",
        "20100101-",
        "--pairs",
        *pairs,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")}
    subprocess.run(
        [
            str(venv / "bin" / "freqtrade"),
            "create-userdir",
            "--userdir",
            str(run_dir / "user_data"),
        ],
        env=env,
        capture_output=True,
        check=True,
    )
    server.reset_counters()
    r = timed(cmd, env, run_dir, run_dir / "out.txt")
    r["influx_cpu"] = 0.0
    r["requests"] = server.counts["total"]
    now = int(time.time() * 1000)
    results = set()
    for b in bases:
        files = list((run_dir / "data").rglob(f"{b}_USDT-1h.*"))
        if not files:
            results.add("no file")
            continue
        dumped = subprocess.run(
            [str(venv / "bin" / "python"), "-c", DUMP, str(files[0])],
            capture_output=True,
            text=True,
        )
        got = json.loads(dumped.stdout) if dumped.returncode == 0 else []
        results.add(check(got, expected(server, b, now)))
    r["data"] = ", ".join(sorted(results))
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latencies", default="0,50", help="ms, comma-separated")
    parser.add_argument("--venv", help="an existing (or to-be-created) venv for freqtrade")
    parser.add_argument("--markets", type=int, default=3500, help="symbols the replay lists")
    args = parser.parse_args()
    header("coinpredict backfill vs freqtrade download-data (same replay, same pairs)")
    bases = symbols_1h()
    print(f"pairs: {len(bases)} ({', '.join(bases)}) 1h, full history, from {DATA}")
    print(f"load average at start: {loadavg()} (the machine is shared: see the note below)")
    rows, figures = [], {}
    with tempdir("cppeer-") as work, influxd(work) as proc:
        t0 = time.perf_counter()
        venv = freqtrade_venv(work, args.venv)
        print(f"freqtrade venv {venv} ready in {time.perf_counter() - t0:.0f} s")
        with ReplayServer(DATA, shift_to_now=True, rate_limit=False, markets=args.markets) as srv:
            for lat in (float(x) for x in args.latencies.split(",")):
                srv.latency_ms = lat
                for i in range(args.runs):
                    order = (
                        ("coinpredict", "freqtrade") if i % 2 == 0 else ("freqtrade", "coinpredict")
                    )
                    for tool in order:
                        name = f"{tool}-{lat:.0f}ms-{i}"
                        if tool == "coinpredict":
                            r = run_coinpredict(work, proc, srv, bases, name)
                        else:
                            r = run_freqtrade(work, venv, srv, bases, name)
                        figures.setdefault((tool, lat), []).append(r)
                        rows.append(
                            [
                                tool,
                                f"{lat:.0f} ms",
                                i + 1,
                                f"{r['wall']:.2f} s",
                                f"{r['cpu']:.2f} s",
                                f"{r['influx_cpu']:.2f} s",
                                f"{r['rss']:.0f} MB",
                                r["requests"],
                                r["data"],
                                r["rc"],
                            ]
                        )
                        print(" | ".join(str(x) for x in rows[-1]), flush=True)
    print(
        table(
            [
                "tool",
                "latency",
                "run",
                "wall",
                "CPU (process)",
                "CPU (influxd)",
                "peak RSS",
                "requests",
                "stored data",
                "exit",
            ],
            rows,
        )
    )
    for lat in sorted({k[1] for k in figures}):
        cp, ft = figures.get(("coinpredict", lat)), figures.get(("freqtrade", lat))
        if not cp or not ft:
            continue

        def med(rs: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in rs)

        cp_cpu = med(cp, "cpu") + med(cp, "influx_cpu")
        print(
            f"RESULT {lat:.0f} ms (medians of {len(cp)}): wall {med(cp, 'wall'):.2f} s vs "
            f"{med(ft, 'wall'):.2f} s -> ratio {med(cp, 'wall') / med(ft, 'wall'):.2f} "
            f"(goal <= 0.9); CPU {med(cp, 'cpu'):.2f} s + influxd {med(cp, 'influx_cpu'):.2f} s"
            f" = {cp_cpu:.2f} s vs {med(ft, 'cpu'):.2f} s (goal <=); peak RSS "
            f"{med(cp, 'rss'):.0f} MB vs {med(ft, 'rss'):.0f} MB -> ratio "
            f"{med(cp, 'rss') / med(ft, 'rss'):.2f} (goal <= 0.5)"
        )
    print(f"load average at end: {loadavg()}")
    print(
        "The machine is shared with other jobs: wall and CPU figures move with its load; "
        "compare the two tools within one run of this bench, not across runs."
    )
    if not os.environ.get("KEEP_PEER_VENV") and not args.venv:
        shutil.rmtree(work / "ftvenv", ignore_errors=True)


if __name__ == "__main__":
    main()
