"""Benchmark: full backfill exchange -> InfluxDB through the real CLI and the replay exchange.

    .venv/bin/python bench/backfill.py [--skip-12]

(a) ``coinpredict backfill --since 2020-01-01 --until 2022-10-01`` for BTC/USDT + ETH/USDT 1h
    (freqtrade: 48,128 candles, 53 requests, 4.4 s / 4.6 s at 0 / 50 ms latency);
(b) ``coinpredict backfill`` of every 1h pair of DATA, full history (12 pairs: freqtrade 397,648
    candles, 417 requests, 13.2 s / 14.5 s);
(c) peak RSS of ``coinpredict ingest`` over 10 symbols 1h: the first run (backfills every new
    series) and a steady-state run right after (nothing new) -- goal <= 250 MB.

The replay runs in this process (its own threads) with its Binance-like weight limiter on; the
CLI is a child process whose wall time is measured from fork to exit (imports included, like
freqtrade's figure); "job" is the run record's duration (lock taken -> done: markets loading,
paging, writing). The client-side limiter (request starts spaced 20 ms apart = ccxt's rateLimit
50 ms x the cost 0.4 of a spot klines call, shared by the adapter's workers) is on.
Bound = pages x max(20 ms, latency); goal: job <= 1.1 x bound.
Each run gets a fresh database and state dir. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time

from common import (
    DATA,
    USING_SAMPLES,
    env_for,
    header,
    influxd,
    loadavg,
    run_cli,
    symbols_1h,
    table,
    tempdir,
)

from coinpredict.replay.server import ReplayServer

RATE_LIMIT_MS = 50.0  # ccxt binance rateLimit (printed below from ccxt itself)
KLINES_COST = 0.4  # ccxt's cost of a spot klines call: ccxt's own throttle sleeps 50 x 0.4 = 20 ms


class TimedReplay(ReplayServer):
    """The replay, also noting when each klines request arrived (monotonic seconds)."""

    def __init__(self, *a, **kw) -> None:  # noqa: ANN002,ANN003
        super().__init__(*a, **kw)
        self.klines_at: list[float] = []

    def _record(self, endpoint: str) -> None:
        super()._record(endpoint)
        if endpoint == "klines":
            self.klines_at.append(time.monotonic())


def job_seconds(state_dir, job: str) -> float | None:  # noqa: ANN001
    path = state_dir / "runs" / f"{job}.jsonl"
    try:
        return float(json.loads(path.read_text().splitlines()[-1])["duration_s"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def one(
    work,
    influx_url: str,
    name: str,
    symbols: list[str],
    args: list[str],
    latency: float,
    job: str = "backfill",
    shift: bool = False,
) -> dict:  # noqa: ANN001
    run_dir = work / name
    env = env_for(influx_url, run_dir, symbols=",".join(symbols), db=name.replace("-", "_"))
    init = run_cli(["init"], env, work=run_dir)
    if init.rc != 0:
        raise SystemExit(f"init failed: {init.err}")
    with TimedReplay(DATA, latency_ms=latency, rate_limit=True, shift_to_now=shift) as server:
        env["COINPREDICT_EXCHANGE_URL"] = server.url
        run = run_cli([job, *args, "--json"], env, work=run_dir)
        counts = dict(server.counts)
        at = server.klines_at
        span = (at[-1] - at[0]) if len(at) > 1 else 0.0
    if run.rc != 0:
        print(f"!! {name}: exit {run.rc}: {run.last_err_line()}")
    try:
        report = json.loads(run.out)
    except ValueError:
        report = {"series": []}
    stored = sum(s.get("stored", 0) for s in report["series"])
    pages = sum(s.get("pages", 0) for s in report["series"])
    return {
        "name": name,
        "rc": run.rc,
        "wall": run.wall_s,
        "job": job_seconds(run_dir / "state", job),
        "rss": run.maxrss_mb,
        "stored": stored,
        "pages": pages,
        "requests": counts.get("total", 0),
        "klines": counts.get("klines", 0),
        "latency": latency,
        "span": span,
        "env": env,
        "dir": run_dir,
    }


def row(r: dict, ref: str) -> list:
    # the bound: pages x max(rateLimit, latency), with ccxt's effective spacing of a
    # spot klines call (rateLimit x cost = 20 ms); and the same with ccxt's bare rateLimit
    bound = r["klines"] * max(RATE_LIMIT_MS * KLINES_COST, r["latency"]) / 1000
    bound50 = r["klines"] * max(RATE_LIMIT_MS, r["latency"]) / 1000
    job = r["job"] or float("nan")
    return [
        r["name"],
        f"{r['latency']:.0f} ms",
        r["stored"],
        r["requests"],
        r["klines"],
        f"{r['wall']:.2f} s",
        f"{job:.2f} s",
        f"{r['span']:.2f} s",
        f"{r['stored'] / r['wall']:,.0f}",
        f"{bound:.2f} s",
        f"{job / bound:.2f}x" if bound else "-",
        f"{bound50:.2f} s",
        f"{r['rss']:.0f} MB",
        ref,
        r["rc"],
    ]


def main() -> None:
    global RATE_LIMIT_MS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-12", action="store_true", help="skip (b), the 12-pair run")
    args = parser.parse_args()
    import ccxt

    RATE_LIMIT_MS = float(ccxt.binance().rateLimit)
    header("backfill exchange -> InfluxDB through the CLI")
    from coinpredict.exchange import connect as exchange_connect

    spacing = getattr(exchange_connect, "REQUEST_SPACING_MS", {}).get("binance", RATE_LIMIT_MS)
    print(
        f"ccxt binance rateLimit {RATE_LIMIT_MS:.0f} ms (= {1000 / RATE_LIMIT_MS:.0f} req/s); "
        f"coinpredict spaces Binance request starts {spacing:.0f} ms apart"
    )
    rows = []
    heads = [
        "run",
        "latency",
        "candles",
        "requests",
        "klines",
        "wall (CLI)",
        "job",
        "klines span",
        "candles/s (wall)",
        "bound",
        "job/bound",
        "bound@50ms",
        "peak RSS",
        "freqtrade",
        "exit",
    ]
    bases = symbols_1h()
    if USING_SAMPLES:
        since_until = ["--since", "2018-01-01", "--until", "2019-06-01"]
    else:
        since_until = ["--since", "2020-01-01", "--until", "2022-10-01"]
    with tempdir() as work, influxd(work) as proc:
        for lat, ref in ((0.0, "4.4 s, 53 req, 341 MB"), (50.0, "4.6 s, 53 req, 341 MB")):
            r = one(
                work,
                proc.url,
                f"a-{lat:.0f}ms",
                ["BTC/USDT", "ETH/USDT"],
                ["-t", "1h", *since_until],
                lat,
            )
            rows.append(row(r, ref))
        if not args.skip_12:
            for lat, ref in ((0.0, "13.2 s, 417 req, 377 MB"), (50.0, "14.5 s, 417 req, 377 MB")):
                r = one(
                    work,
                    proc.url,
                    f"b-{lat:.0f}ms",
                    [f"{b}/USDT" for b in bases],
                    ["-t", "1h"],
                    lat,
                    shift=True,
                )
                rows.append(row(r, ref))
        ten = [f"{b}/USDT" for b in bases[:10]]
        r = one(work, proc.url, "c-ingest", ten, [], 0.0, job="ingest", shift=True)
        rows.append(row(r, "-"))
        # steady state: the same setup again, nothing new to fetch
        with ReplayServer(DATA, rate_limit=True, shift_to_now=True) as server:
            env = dict(r["env"], COINPREDICT_EXCHANGE_URL=server.url)
            again = run_cli(["ingest", "--json"], env, work=r["dir"])
            req = server.counts["total"]
        rows.append(
            [
                "c-ingest again",
                "0 ms",
                0,
                req,
                "-",
                f"{again.wall_s:.2f} s",
                f"{job_seconds(r['dir'] / 'state', 'ingest') or 0:.2f} s",
                "-",
                "-",
                "-",
                "-",
                "-",
                f"{again.maxrss_mb:.0f} MB",
                "-",
                again.rc,
            ]
        )
    print(table(heads, rows))
    print(f"load average at end: {loadavg()}")
    print(
        "bound = klines requests x max(spacing, latency) with ccxt's own spacing of a spot "
        f"klines call (rateLimit {RATE_LIMIT_MS:.0f} ms x cost {KLINES_COST} = "
        f"{RATE_LIMIT_MS * KLINES_COST:.0f} ms: 50 req/s, Binance's 6,000 weight/min at "
        "weight 2); bound@50ms = the same with ccxt's bare rateLimit; 'klines span' = first "
        "to last klines request arrival at the replay; 'job' = the run record (lock -> done: "
        "ccxt import, markets, paging, writing); goal job <= 1.1 x bound"
    )
    print(
        "(b) and (c) replay the files shifted by whole weeks so that they end now (the CLI "
        "runs on the system clock); the candles that would still be in the future are hidden"
    )
    print(
        "RESULT peak RSS of `coinpredict ingest` over 10 symbols: "
        f"{max(float(rows[-2][12].split()[0]), float(rows[-1][12].split()[0])):.0f} MB "
        "(goal <= 250 MB)"
    )


if __name__ == "__main__":
    main()
