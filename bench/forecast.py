"""Forecast benchmark: rolling-origin backtest of naive and ridge on the real candles.

    .venv/bin/python bench/forecast.py [--data ../shared/data] [--timeframes 1h,1d]
        [--symbols BTC,ETH,...] [--origins 150] [--span-days N] [--per-horizon] [--json OUT]
    .venv/bin/python bench/forecast.py --split 2021-07-01 [--timeframes 1h,1d] [--json OUT]

For each timeframe it backtests every symbol (origins spread evenly over all candles that have
enough history, or over the last ``--span-days`` days), prints the table overall / per horizon /
per symbol, checks the acceptance figures, then times fit+predict on 2 years of 1h candles on
one core and measures the peak RSS of forecasting 10 series from a trained registry.

With ``--split``: the split evaluation (coinpredict.forecast.evaluation, what ``models backtest
--split`` runs on stored candles) straight on the CSV files: every choice tuned before the date,
figures from it on, every candle an origin with the online calibration as ``predict`` applies
it; the issue's targets are checked, rolling 30-day coverage is printed with online calibration
on and off, and ``train`` is timed on 2-year 1h series.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as on the VM

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import polars as pl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coinpredict.forecast.backtest import backtest, format_table  # noqa: E402
from coinpredict.forecast.models import NaiveForecaster, RidgeForecaster  # noqa: E402
from coinpredict.forecast.types import DEFAULT_HORIZONS  # noqa: E402

SYMBOLS = ("BTC", "ETH", "BNB", "XRP", "ADA", "SOL", "DOGE", "DOT", "MATIC", "LTC", "AVAX", "LINK")


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(
        path,
        schema_overrides={
            "timestamp": pl.Int64,
            **{c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
        },
    )


def load_frames(data: Path, symbols: list[str], tf: str) -> dict[str, pl.DataFrame]:
    """``{SYMBOL/USDT: candles}`` of every symbol with a CSV file for ``tf``."""
    paths = {f"{s}/USDT": data / f"{s}_USDT-{tf}.csv" for s in symbols}
    return {sym: read(path) for sym, path in paths.items() if path.exists()}


def record(section: dict, tf: str, res: Any, t0: float) -> tuple[dict, float]:
    """(the result as JSON, kept in ``section[tf]``; seconds since ``t0``)."""
    secs = time.perf_counter() - t0
    section[tf] = res.to_json()
    return section[tf], secs


def check(tf: str, res: dict, level: float) -> list[tuple[str, bool, str]]:
    r = res["models"]["ridge"]
    n = res["models"]["naive"]
    o = r["overall"]
    per_h = [m["relative_mae"] for m in r["per_horizon"]]
    sym_cov = {s: m["coverage"] for s, m in r["per_symbol"].items()}
    h1 = r["per_horizon"][0]["coverage"]
    return [
        ("relative MAE <= 1.00 overall", o["relative_mae"] <= 1.0, f"{o['relative_mae']:.4f}"),
        ("relative MAE <= 1.02 every horizon", max(per_h) <= 1.02, f"max {max(per_h):.4f}"),
        ("80% coverage 0.77-0.83", 0.77 <= o["coverage"] <= 0.83, f"{o['coverage']:.3f}"),
        ("95% coverage 0.93-0.97", 0.93 <= o["coverage_95"] <= 0.97, f"{o['coverage_95']:.3f}"),
        (
            "80% coverage 0.73-0.87 every symbol",
            all(0.73 <= c <= 0.87 for c in sym_cov.values()),
            f"{min(sym_cov.values()):.3f}-{max(sym_cov.values()):.3f}",
        ),
        ("80% coverage 0.75-0.85 at h=1", 0.75 <= h1 <= 0.85, f"{h1:.3f}"),
        (
            "80% band no wider than naive's",
            o["width_pct"] <= n["overall"]["width_pct"],
            f"{o['width_pct']:.2f}% vs {n['overall']['width_pct']:.2f}%",
        ),
    ]


SPLIT_TARGETS = "80% 0.77-0.83 overall and every h, every symbol 0.73-0.87, 95% 0.93-0.97"


def split_checks(js: dict) -> list[tuple[str, bool, str]]:
    served = js["models"]["served"]
    o = served["overall"]
    per_h = [m["coverage"] for m in served["per_horizon"]]
    sym = [m["coverage"] for m in served["per_symbol"].values()]
    return [
        ("80% coverage 0.77-0.83 overall", 0.77 <= o["coverage"] <= 0.83, f"{o['coverage']:.3f}"),
        (
            "80% coverage 0.77-0.83 at every h",
            all(0.77 <= c <= 0.83 for c in per_h),
            f"{min(per_h):.3f}-{max(per_h):.3f} (h=1 {per_h[0]:.3f})",
        ),
        (
            "80% coverage 0.73-0.87 every symbol",
            all(0.73 <= c <= 0.87 for c in sym),
            f"{min(sym):.3f}-{max(sym):.3f}",
        ),
        ("95% coverage 0.93-0.97", 0.93 <= o["coverage_95"] <= 0.97, f"{o['coverage_95']:.3f}"),
        ("mean 80% width <= naive's", o["relative_width"] <= 1.0, f"{o['relative_width']:.3f}x"),
        (
            "interval score <= naive's",
            o["relative_interval_score"] <= 1.0,
            f"{o['relative_interval_score']:.4f}",
        ),
        ("relative MAE <= 1.00", o["relative_mae"] <= 1.0, f"{o['relative_mae']:.4f}"),
    ]


def rolling_summary(values: list[float], first_days: int | None = None) -> str:
    v = values[:first_days] if first_days else values
    if not v:
        return "-"
    inside = sum(0.75 <= x <= 0.85 for x in v) / len(v)
    return f"{min(v):.3f}-{max(v):.3f} ({inside:.0%} of days within 0.75-0.85)"


def run_split(args: argparse.Namespace, symbols: list[str]) -> tuple[dict, bool]:
    from coinpredict.base.timeframes import parse_instant
    from coinpredict.forecast.evaluation import format_split, split_backtest

    split_ms = parse_instant(args.split, setting="--split")
    report: dict = {"split": args.split, "results": {}, "checks": {}}
    ok_all = True
    for tf in args.timeframes.split(","):
        frames = load_frames(args.data, symbols, tf)
        t0 = time.perf_counter()
        res = split_backtest(
            frames,
            tf,
            DEFAULT_HORIZONS[tf],
            split_ms,
            level=args.level,
            etas_common=[float(x) for x in args.etas_common.split(",")],
            tolerance=None if args.tolerance == "none" else float(args.tolerance),
        )
        js, secs = record(report["results"], tf, res, t0)
        print(
            f"\n== {tf}: {len(frames)} symbols, split {args.split}, origins "
            f"{js['first_origin']} .. {js['last_origin']}, eta {res.eta}, bound {res.bound}, "
            f"common eta {res.eta_common} (admissible: {res.candidates}), "
            f"{secs:.0f} s, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        print("served band per symbol (chosen before the split):", res.choice)
        print(format_split(res))
        print("rolling 30-day 80% coverage (pooled over symbols), first 6 months / all:")
        for label in ("served", "ridge", "naive"):
            vals = js["rolling_30d_coverage"][label]["values"]
            on = "online on " if label == "served" else "online off"
            print(f"  {label:<7} {on}: {rolling_summary(vals, 183 - 30)} / {rolling_summary(vals)}")
        checks = split_checks(js)
        report["checks"][tf] = [{"check": c, "ok": ok, "value": v} for c, ok, v in checks]
        for c, ok, v in checks:
            ok_all &= ok
            print(f"  [{'ok' if ok else 'FAIL'}] {c}: {v}")
    return report, ok_all


def time_train(frames: dict[str, pl.DataFrame], candles: int = 17_520) -> dict[str, float]:
    """``registry.train_series`` (fit + the gate's backtest + save) on 2-year 1h series."""
    from coinpredict.forecast import registry

    runs, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for sym, fr in frames.items():
            if fr.height < candles:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            registry.train_series(tmp, sym, "1h", fr.tail(candles), 24)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    runs.sort()
    cpu.sort()
    return {
        "median_s": runs[len(runs) // 2],
        "max_s": runs[-1],
        "cpu_median_s": cpu[len(cpu) // 2],
        "cpu_max_s": cpu[-1],
        "series": len(runs),
    }


def refit_check(frames: dict[str, pl.DataFrame], k: int, candles: int = 17_520) -> list[dict]:
    """The gate's backtest (100 origins, 2-year 1h series) refitted at every origin vs every
    k-th: the figures the gate reads, side by side."""
    out = []
    for sym, fr in frames.items():
        sub = fr.tail(candles)
        row = {"symbol": sym}
        for every in (1, k):
            o = backtest(sub, "1h", ["ridge"], 24, origins=100, refit_every=every)
            m = o.models["ridge"].overall
            for key in ("relative_pinball", "coverage", "coverage_95", "relative_mae"):
                row[f"{key}@{every}"] = m[key]
        out.append(row)
        print(
            f"  {sym:<11} k=1 vs k={k}: rel. pinball {row['relative_pinball@1']:.4f} / "
            f"{row[f'relative_pinball@{k}']:.4f}, coverage {row['coverage@1']:.3f} / "
            f"{row[f'coverage@{k}']:.3f}, 95% {row['coverage_95@1']:.3f} / "
            f"{row[f'coverage_95@{k}']:.3f}"
        )
    return out


def time_fit_predict(frames: dict[str, pl.DataFrame], candles: int = 17_520) -> dict[str, float]:
    out = {}
    for name, cls in (("ridge", RidgeForecaster), ("naive", NaiveForecaster)):
        runs = []
        for fr in frames.values():
            if fr.height < candles:
                continue
            sub = fr.tail(candles)
            cls("1h", 24).fit(sub).predict(sub)  # warm
            t0 = time.perf_counter()
            for _ in range(5):
                cls("1h", 24).fit(sub).predict(sub)
            runs.append((time.perf_counter() - t0) / 5 * 1000)
        runs.sort()
        out[name] = {"median_ms": runs[len(runs) // 2], "max_ms": runs[-1], "series": len(runs)}
    return out


PREDICT_CHILD = r"""
import resource, sys, time
t0 = time.perf_counter()
import polars as pl
from coinpredict.forecast.registry import forecast_for_series
models, data = sys.argv[1], sys.argv[2]
syms = sys.argv[3].split(",")
for s in syms:
    fr = pl.read_csv(f"{data}/{s}_USDT-1h.csv", schema_overrides={"timestamp": pl.Int64}).tail(5000)
    forecast_for_series(models, f"{s}/USDT", "1h", fr, 24).check()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t0)
"""


def predict_memory(data: Path, symbols: list[str]) -> dict[str, float]:
    from coinpredict.forecast import registry

    syms = symbols[:10]
    with tempfile.TemporaryDirectory() as tmp:
        for s in syms:
            fr = read(data / f"{s}_USDT-1h.csv").tail(17_520)
            registry.train_series(tmp, f"{s}/USDT", "1h", fr, 24, origins=3)
            registry.promote(
                tmp,
                f"{s}/USDT",
                "1h",
                gate=registry.Gate(
                    min_samples=0,
                    coverage_tolerance=1,
                    coverage95_tolerance=1,
                    max_relative_mae=9,
                    margin=-9,
                    max_relative_width=9,
                    max_relative_interval_score=9,
                ),
            )
        out = subprocess.run(
            [sys.executable, "-c", PREDICT_CHILD, tmp, str(data), ",".join(syms)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    rss, secs = out.stdout.split()
    return {"series": len(syms), "peak_rss_mb": float(rss), "seconds": float(secs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--timeframes", default="1h,1d")
    ap.add_argument("--symbols", default=",".join(SYMBOLS))
    ap.add_argument("--origins", type=int, default=150)
    ap.add_argument(
        "--span-days", type=int, default=None, help="origins only in the last N days of each series"
    )
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--per-horizon", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="skip the backtests")
    ap.add_argument("--split", help="YYYY-MM-DD: the split evaluation instead of the backtest")
    ap.add_argument(
        "--etas-common",
        default="0",
        help="--split: learning rates of the term shared by every step tried on the tuning "
        "period (comma-separated; 0 = none)",
    )
    ap.add_argument(
        "--tolerance",
        default="0.03",
        help="--split: only online rates and bounds that guarantee coverage within this of "
        "nominal after a year of scored forecasts are candidates ('none': all)",
    )
    ap.add_argument("--train-timing", action="store_true", help="time train on 2-year 1h series")
    ap.add_argument("--refit-series", type=int, default=4, help="series for the refit check")
    args = ap.parse_args()
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.split or args.train_timing:
        return split_main(args, symbols)
    report: dict = {"backtests": {}, "checks": {}}
    ok_all = True
    hourly: dict[str, pl.DataFrame] = {}
    for tf in args.timeframes.split(","):
        frames = load_frames(args.data, symbols, tf)
        if tf == "1h":
            hourly = frames
        if args.timing_only:
            continue
        H = DEFAULT_HORIZONS[tf]
        t0 = time.perf_counter()
        res = backtest(
            frames,
            tf,
            ["ridge", "naive"],
            H,
            origins=args.origins,
            span=None if args.span_days is None else args.span_days * (24 if tf == "1h" else 1),
            level=args.level,
        )
        js, secs = record(report["backtests"], tf, res, t0)
        print(
            f"\n== {tf}: {len(frames)} symbols, horizon {H}, {res.n_origins} origins "
            f"({js['first_origin']} .. {js['last_origin']}), {secs:.0f} s"
        )
        print(format_table(res, per_horizon=args.per_horizon))
        checks = check(tf, js, args.level)
        report["checks"][tf] = [{"check": c, "ok": ok, "value": v} for c, ok, v in checks]
        for c, ok, v in checks:
            ok_all &= ok
            print(f"  [{'ok' if ok else 'FAIL'}] {c}: {v}")
    if not args.skip_timing and hourly:
        tm = time_fit_predict(hourly)
        report["fit_predict_2y_1h"] = tm
        print("\nfit+predict on 17,520 1h candles (one core):")
        for k, v in tm.items():
            print(
                f"  {k:<6} median {v['median_ms']:.1f} ms, max {v['max_ms']:.1f} ms "
                f"over {v['series']} series"
            )
        ok_all &= tm["ridge"]["max_ms"] <= 50
        mem = predict_memory(args.data, [s for s in symbols if f"{s}/USDT" in hourly])
        report["predict_memory"] = mem
        print(
            f"forecast {mem['series']} series from a trained registry: peak RSS "
            f"{mem['peak_rss_mb']:.0f} MB, {mem['seconds']:.2f} s including imports"
        )
        ok_all &= mem["peak_rss_mb"] <= 300
    print(
        f"\nbench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("ALL CHECKS PASS" if ok_all else "SOME CHECKS FAIL")
    return 0 if ok_all else 1


def split_main(args: argparse.Namespace, symbols: list[str]) -> int:
    report: dict = {}
    ok_all = True
    if args.split:
        report, ok_all = run_split(args, symbols)
    if args.train_timing:
        hourly = load_frames(args.data, symbols, "1h")
        tm = time_train(hourly)
        report["train_2y_1h"] = tm
        print(
            f"\ntrain (fit + gate backtest + save) on 17,520 1h candles: median "
            f"{tm['median_s']:.2f} s, max {tm['max_s']:.2f} s wall; CPU time of this process "
            f"median {tm['cpu_median_s']:.2f} s, max {tm['cpu_max_s']:.2f} s; over "
            f"{tm['series']} series, load {os.getloadavg()[0]:.1f}"
        )
        ok_all &= tm["cpu_max_s"] <= 3.0
        from coinpredict.forecast.registry import GATE_REFIT_EVERY

        print(f"gate backtest refitted at every origin vs every {GATE_REFIT_EVERY}th:")
        some = dict(list(hourly.items())[: args.refit_series])
        report["refit_check"] = refit_check(some, GATE_REFIT_EVERY)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("ALL CHECKS PASS" if ok_all else "SOME CHECKS FAIL")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
