"""Benchmark: peak RSS and wall time of every command, run as real subprocesses.

    .venv/bin/python bench/rss.py [--symbols BTC/USDT,ETH/USDT] [--timeframes 1h,1d]

A realistic small setup: BTC/USDT + ETH/USDT x 1h + 1d, full history from the replay exchange
(shifted by whole weeks so that it ends now: the CLI runs on the system clock), a private
influxd, then every command in the order an operator would run them. Peak RSS is the command's
own high-water mark (``/usr/bin/time -f %M``, see bench/common.py); wall time is fork to exit,
imports included. Goal: every command <= 250 MB. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse

from common import env_for, header, influxd, run_cli, table, tempdir

from coinpredict.replay.server import ReplayServer

GOAL_MB = 250


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC/USDT,ETH/USDT")
    parser.add_argument("--timeframes", default="1h,1d")
    args = parser.parse_args()
    header("peak RSS and wall time of every command")
    from common import DATA

    one = args.symbols.split(",")[0]
    steps: list[list[str]] = [
        ["--help"],
        ["config"],
        ["init"],
        ["backfill"],
        ["ingest"],
        ["detect-gaps"],
        ["train", "--promote"],
        ["predict"],
        ["export"],
        ["cycle"],
        ["status"],
        ["monitor"],
        ["models", "list", "-s", one, "-t", "1h"],
        ["models", "report", "-s", one, "-t", "1h"],
        ["check"],
    ]
    rows = []
    worst = 0.0
    with (
        tempdir() as work,
        influxd(work) as proc,
        ReplayServer(DATA, shift_to_now=True, rate_limit=True) as server,
    ):
        env = env_for(
            proc.url,
            work,
            exchange_url=server.url,
            symbols=args.symbols,
            timeframes=args.timeframes,
        )
        for argv in steps:
            r = run_cli(argv, env, work=work / "runs")
            worst = max(worst, r.maxrss_mb)
            note = "" if r.rc == 0 else r.last_err_line()[:70]
            rows.append(
                [
                    "coinpredict " + " ".join(argv),
                    f"{r.maxrss_mb:.0f} MB",
                    f"{r.wall_s:.2f} s",
                    r.rc,
                    "ok" if r.maxrss_mb <= GOAL_MB else "OVER",
                    note,
                ]
            )
    print(f"setup: {args.symbols} x {args.timeframes}, full history, data {DATA}")
    print(table(["command", "peak RSS", "wall", "exit", f"<= {GOAL_MB} MB", "note"], rows))
    print(f"RESULT largest peak RSS of any command: {worst:.0f} MB (goal <= {GOAL_MB} MB)")
    print("(status/monitor exit 1 = some series stale or degraded, not a failure of the run)")


if __name__ == "__main__":
    main()
