"""Bench: a replayed live run of the product, with online calibration on and off.

    nice -n 19 .venv/bin/python bench/live_replay.py [--start 2021-07-01] [--days 182]
        [--symbols BTC,ETH,BNB,XRP,ADA,DOGE] [--modes on,off] [--json out.json]

What runs is the product's own job functions, not a re-implementation: every hour (HH:00:30 on
a FixedClock that the in-process replay exchange shares) ``run_candle_job("ingest")`` fetches
the candle that just closed from the replay exchange (real ccxt over HTTP) into a real influxd,
then ``run_predict_job`` forecasts every series with its champion and stores the forecast in
InfluxDB (online calibration in ``predict``, state in the state dir); every Monday 01:00 UTC
(``--train-weeks N``: every N-th) ``run_train_job(promote=True)`` (a weekly ``train --promote``:
the quality gate decides the champion). Before the first hour InfluxDB holds the two fit windows before ``--start`` (what
``train`` reads), and ``train --promote`` runs once.

Each mode has its own database and state dir on the same influxd and the same clock. ``off`` is
the same code with the online learning rate set to 0 for the run (``online.PARAMS``), so the
bands served are the champion's own.

At the end every stored champion forecast step (from InfluxDB, as the product stored it) is
scored against the candle that realised it, at the time that candle closed: overall and h=1
coverage of the 80% and 95% bands, and the pooled rolling 30-day 80% coverage, one value per
day, from day 30 on. Goal (issue 19): the on-run's rolling coverage within 0.75-0.85 after the
first 30 days.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from common import DATA, H, env_for, header, influxd, loadavg, read_rows, settings_for, tempdir

from coinpredict.base.clock import FixedClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage

TF = TIMEFRAMES["1h"]
DAY = 24 * H
WEEK = 7 * DAY


def _ms(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)


class Mode:
    """One replayed deployment: its own database and state dir."""

    def __init__(
        self, name: str, proc_url: str, work: Path, replay_url: str, symbols: str, clock: FixedClock
    ):
        self.name = name
        env = env_for(
            proc_url,
            work / name,
            exchange_url=replay_url,
            symbols=symbols,
            db=f"live_{name}",
            COINPREDICT_TIMEFRAMES="1h",
        )
        self.settings = settings_for(env)
        self.http = InfluxHTTP(proc_url)
        init_storage(self.settings, self.http)
        self.store = CandleStore(
            self.http, db=self.settings.influx_db, db_1m=self.settings.influx_db_1m
        )
        from coinpredict.exchange import connect

        # one exchange adapter for the whole run (a cycle process builds one per run; the ccxt
        # setup is not what this bench measures)
        self.exchange = connect.exchange(self.settings, clock)
        self.cpu = {"ingest": 0.0, "predict": 0.0, "train": 0.0}
        self.failed = 0
        self.trained: list[str] = []

    def online(self, on: bool) -> None:
        from coinpredict.forecast import online

        if not hasattr(self, "_params"):
            self._params = dict(online.PARAMS)
        online.PARAMS.clear()
        online.PARAMS.update(self._params)
        if not on:
            online.PARAMS["1h"] = (0.0, self._params["1h"][1], 0.0)


def champions(mode: Mode, series: list[Series]) -> str:
    from coinpredict.forecast.registry import champion
    from coinpredict.serving.predict import models_dir

    return ",".join(
        champion(models_dir(mode.settings), s.symbol, TF).version.replace("builtin", "naive")
        for s in series
    )


def score(mode: Mode, series: list[Series], closes: dict[str, dict[int, float]]) -> dict:
    """Every stored champion forecast step against its candle, by the time that candle closed."""
    from coinpredict.store.predictions import PredictionStore

    pstore = PredictionStore(mode.http, db=mode.settings.influx_db)
    rows = []  # closed_at, h, miss80, miss95
    for s in series:
        c = closes[s.symbol]
        for t, _close, lo, hi, lo95, hi95, last in pstore.points(s, "champion"):
            y = c.get(int(t))
            if y is None:
                continue
            h = (int(t) - int(last)) // H
            rows.append((int(t) + H, h, not lo <= y <= hi, not lo95 <= y <= hi95))
    a = np.array(rows, dtype=np.float64)
    a = a[np.argsort(a[:, 0])]
    first = a[0, 0]
    days = []
    d = first + 30 * DAY
    while d <= a[-1, 0]:
        sel = (a[:, 0] > d - 30 * DAY) & (a[:, 0] <= d)
        days.append(1.0 - a[sel, 2].mean())
        d += DAY
    cov = np.array(days or [np.nan])
    h1 = a[a[:, 1] == 1]
    return {
        "pairs": len(a),
        "coverage": round(1 - a[:, 2].mean(), 4),
        "coverage_95": round(1 - a[:, 3].mean(), 4),
        "h1_coverage": round(1 - h1[:, 2].mean(), 4),
        "rolling30_min": round(float(np.min(cov)), 4),
        "rolling30_max": round(float(np.max(cov)), 4),
        "rolling30_in_band": round(float(np.mean((cov >= 0.75) & (cov <= 0.85))), 4),
        "rolling30_days": len(days),
        "rolling30": [round(float(x), 4) for x in cov],
    }


def report(
    modes: list[Mode],
    series: list[Series],
    closes: dict[str, dict[int, float]],
    hour: int,
    path: Path | None,
    *,
    final: bool,
) -> dict:
    out = {}
    for m in modes:
        m.online(True)
        res = score(m, series, closes)
        res.update(
            hours=hour,
            failed=m.failed,
            cpu_s={k: round(v, 1) for k, v in m.cpu.items()},
            champions=m.trained,
            final=final,
        )
        out[m.name] = res
        print(
            f"{'RESULT' if final else 'partial'} online {m.name} after {hour} hours: "
            f"{res['pairs']} scored steps; 80% coverage "
            f"{res['coverage']:.3f} (h=1 {res['h1_coverage']:.3f}), 95% "
            f"{res['coverage_95']:.3f}; rolling 30-day 80% coverage from day 30: "
            f"{res['rolling30_min']:.3f}-{res['rolling30_max']:.3f}, "
            f"{res['rolling30_in_band']:.0%} of {res['rolling30_days']} days in "
            f"0.75-0.85; failed series-runs {m.failed}; CPU (this process) {res['cpu_s']}",
            flush=True,
        )
        if final:
            print(f"       champions after each train --promote: {' '.join(m.trained)}")
    if path is not None:
        path.write_text(json.dumps(out, indent=1))
    return out


def score_only(args: argparse.Namespace) -> None:
    """Score what a run has stored so far (its influxd at URL, database DB)."""
    from types import SimpleNamespace

    url, db = args.score_influx.rsplit("/", 1)
    bases = args.symbols.split(",")
    series = [Series("binance", f"{b}/USDT", TF) for b in bases]
    closes = {
        f"{b}/USDT": {r[0]: r[4] for r in read_rows(DATA / f"{b}_USDT-1h.csv")} for b in bases
    }
    mode = SimpleNamespace(http=InfluxHTTP(url), settings=SimpleNamespace(influx_db=db))
    res = score(mode, series, closes)  # type: ignore[arg-type]
    last = res.pop("rolling30")
    print(f"{db}: {json.dumps(res)}; load {loadavg()}")
    print(f"rolling 30-day 80% coverage, one value a day from day 30: {last}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", default="2021-07-01")
    p.add_argument("--days", type=int, default=182)
    p.add_argument("--symbols", default="BTC,ETH,BNB,XRP,ADA,DOGE")
    p.add_argument("--modes", default="on,off")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--score-influx",
        metavar="URL/DB",
        help="only score the forecasts stored so far in a (running) run's influxd and database",
    )
    p.add_argument(
        "--train-weeks", type=int, default=1, help="train --promote every N weeks (Monday 01:00)"
    )
    args = p.parse_args()
    if args.score_influx:
        score_only(args)
        return
    header("replayed live run: ingest + predict every hour, weekly train --promote")

    from coinpredict.forecast.models import candles_needed
    from coinpredict.jobs.runner import run_candle_job, run_predict_job, run_train_job
    from coinpredict.replay import ReplayServer
    from coinpredict.store.candles import SCHEMA  # noqa: F401  (the frame schema of the store)

    bases = args.symbols.split(",")
    start = _ms(args.start)
    end = start + args.days * DAY
    history = candles_needed(TF, 24, "train")
    clock = FixedClock(start + 30_000)
    series = [Series("binance", f"{b}/USDT", TF) for b in bases]
    closes: dict[str, dict[int, float]] = {}
    t_wall = time.perf_counter()
    with tempdir("cplive-") as work, influxd(work) as proc:
        replay_dir = work / "replay"
        replay_dir.mkdir()
        pre: dict[str, list] = {}
        for b in bases:
            rows = read_rows(DATA / f"{b}_USDT-1h.csv")
            closes[f"{b}/USDT"] = {r[0]: r[4] for r in rows}
            pre[b] = [r for r in rows if r[0] < start][-history:]
            tail = [r for r in rows if start - 48 * H <= r[0] <= end + 2 * DAY]
            with open(replay_dir / f"{b}_USDT-1h.csv", "w") as f:
                f.write("timestamp,open,high,low,close,volume\n")
                f.writelines(",".join(str(x) for x in r) + "\n" for r in tail)
        server = ReplayServer(replay_dir, clock=clock).start()
        try:
            modes = [
                Mode(m, proc.url, work, server.url, ",".join(f"{b}/USDT" for b in bases), clock)
                for m in args.modes.split(",")
            ]
            for m in modes:
                for b in bases:
                    m.store.write(Series("binance", f"{b}/USDT", TF), pre[b])
            print(
                f"{len(bases)} series, {iso(start)} .. {iso(end)}; preloaded "
                f"{sum(len(v) for v in pre.values()):,} candles per mode; load {loadavg()}"
            )
            del pre
            hour = 0
            t = start
            while t < end:
                clock.ms = t + 30_000
                weekly = t == start or (
                    datetime.fromtimestamp(t / 1000, UTC).weekday() == 0
                    and t % DAY == H
                    and (t - start) // WEEK % args.train_weeks == 0
                )
                for m in modes:
                    m.online(m.name != "off")
                    c0 = time.process_time()
                    ing = run_candle_job("ingest", m.settings, clock=clock, exchange=m.exchange)
                    c1 = time.process_time()
                    if weekly:
                        tr = run_train_job(m.settings, promote=True, clock=clock)
                        m.trained.append(f"{iso(t)[:10]}:{champions(m, series)}")
                        m.failed += len(tr.failed)
                    c2 = time.process_time()
                    pred = run_predict_job(m.settings, clock=clock)
                    c3 = time.process_time()
                    m.cpu["ingest"] += c1 - c0
                    m.cpu["train"] += c2 - c1
                    m.cpu["predict"] += c3 - c2
                    m.failed += len(ing.failed) + len(pred.failed)
                hour += 1
                if hour % (24 * 14) == 0:
                    print(
                        f"  {iso(t)[:10]}: {hour} hours, wall {time.perf_counter() - t_wall:.0f} s, "
                        + ", ".join(
                            f"{m.name} CPU ingest {m.cpu['ingest']:.0f} s predict "
                            f"{m.cpu['predict']:.0f} s train {m.cpu['train']:.0f} s"
                            for m in modes
                        )
                        + f"; load {loadavg()}",
                        flush=True,
                    )
                if hour % (24 * 28) == 0 and args.json:  # partial figures, in case of a stop
                    report(modes, series, closes, hour, args.json, final=False)
                t += H
            out = report(modes, series, closes, hour, args.json, final=True)
        finally:
            for m in modes:
                m.exchange.close()
            server.stop()
    print(f"wall {time.perf_counter() - t_wall:.0f} s; load at end {loadavg()}; {len(out)} modes")


if __name__ == "__main__":
    main()
