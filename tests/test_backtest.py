"""Rolling-origin backtest: honest origins, metrics, several series."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest
from helpers.samples import load

from coinpredict.forecast.backtest import backtest, format_table
from coinpredict.forecast.models import NaiveForecaster
from coinpredict.forecast.types import InsufficientHistoryError


class SpyNaive(NaiveForecaster):
    """Naive that records the newest candle it was ever shown."""

    name = "naive"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.seen: list[tuple[str, int]] = []

    def fit(self, frame: pl.DataFrame) -> SpyNaive:
        self.seen.append(("fit", int(frame["timestamp"][-1])))
        return super().fit(frame)

    def predict(self, frame: pl.DataFrame, **kw: Any):  # type: ignore[override]
        self.seen.append(("predict", int(frame["timestamp"][-1])))
        fc = super().predict(frame, **kw)
        self.seen.append(("origin", fc.origin_ms))
        return fc


def test_backtest_reports_every_metric() -> None:
    frame = load("BTC_USDT-1d")
    res = backtest(frame, "1d", ["ridge", "naive"], 7, origins=15)
    assert res.n_origins == 15 and res.horizon == 7
    naive = res.model("naive").overall
    assert naive["relative_mae"] == 1.0 and naive["relative_pinball"] == 1.0
    ridge = res.model("ridge")
    for key in (
        "samples",
        "mae_pct",
        "relative_mae",
        "mase",
        "log_error",
        "directional_accuracy",
        "coverage",
        "coverage_95",
        "width_pct",
        "width_95_pct",
        "relative_pinball",
        "fit_predict_ms_mean",
    ):
        assert key in ridge.overall, key
    assert ridge.overall["samples"] == 15 * 7
    assert 0 <= ridge.overall["coverage"] <= ridge.overall["coverage_95"] <= 1
    assert [m["h"] for m in ridge.per_horizon] == list(range(1, 8))
    assert all(m["samples"] == 15 for m in ridge.per_horizon)
    text = json.dumps(res.to_json(), allow_nan=False)
    assert '"first_origin": "20' in text
    table = format_table(res, per_horizon=True)
    assert "ridge" in table and "h=7" in table and "relMAE" in table


def test_naive_is_added_and_per_symbol_coverage_reported() -> None:
    frames = {"BTC/USDT": load("BTC_USDT-1d"), "ETH/USDT": load("ETH_USDT-1d")}
    res = backtest(frames, "1d", ["ridge"], 5, origins=10, span=400)
    assert set(res.models) == {"ridge", "naive"}
    assert set(res.model("ridge").per_symbol) == {"BTC/USDT", "ETH/USDT"}
    assert res.n_origins == 20
    assert "BTC/USDT" in format_table(res)


def test_no_look_ahead_and_refit_every() -> None:
    frame = load("BTC_USDT-1d")
    spy = SpyNaive("1d", 5)
    ts = frame["timestamp"].to_list()
    rows = [500, 700, 900, 1100]
    res = backtest(frame, "1d", [spy], 5, origins=rows, refit_every=2)
    assert res.n_origins == 4
    origins = [t for kind, t in spy.seen if kind == "origin"]
    assert origins == [ts[r] for r in rows]
    predicts = [t for kind, t in spy.seen if kind == "predict"]
    assert predicts == origins  # each forecast saw data up to its origin, never beyond
    fits = [t for kind, t in spy.seen if kind == "fit"]
    assert fits == [ts[500], ts[900]]  # refit every 2nd origin


def test_gaps_in_the_outcomes_are_skipped() -> None:
    frame = load("BTC_USDT-1h")
    # An origin 3 h before the 33 h outage of 2018-02-08: most of its steps never happened.
    o = frame["timestamp"].to_list().index(1_518_040_800_000)  # 2018-02-07T22:00Z
    res = backtest(frame, "1h", ["naive"], 24, origins=[o])
    assert res.model("naive").overall["samples"] == 2


def test_too_short_for_any_origin() -> None:
    with pytest.raises(InsufficientHistoryError):
        backtest(load("BTC_USDT-1d").head(40), "1d", ["ridge"], 7, origins=5)


def test_duplicate_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        backtest(load("BTC_USDT-1d"), "1d", ["ridge", "ridge"], 7, origins=2)


SPLIT = 1_625_097_600_000  # 2021-07-01


def test_split_choices_never_see_the_candles_after_the_split() -> None:
    """Replace every candle after the split by a wild random walk: what was chosen (learning
    rate, served band, tuning figures) must not move; the headline figures must."""
    from coinpredict.forecast.evaluation import split_backtest

    frame = load("BTC_USDT-1d").filter(pl.col("timestamp") >= SPLIT - 800 * 86_400_000)
    after = frame["timestamp"] >= SPLIT
    rng = np.random.default_rng(7)
    wild = float(frame.filter(~after)["close"][-1]) * np.exp(
        np.cumsum(rng.normal(0, 0.15, int(after.sum())))
    )
    other = frame.with_columns(
        *(
            pl.when(after)
            .then(pl.Series(np.r_[np.ones(int((~after).sum())), wild]))
            .otherwise(pl.col(c))
            .alias(c)
            for c in ("open", "high", "low", "close")
        )
    )
    # the whole grid, so that the learning rate is a choice the tuning period makes
    a = split_backtest(frame, "1d", 7, SPLIT, tune_days=200, tolerance=None)
    b = split_backtest(other, "1d", 7, SPLIT, tune_days=200, tolerance=None)
    assert (a.eta, a.choice, a.tuning) == (b.eta, b.choice, b.tuning)
    assert a.first_origin == SPLIT and a.tuning["served"]["samples"] > 1000
    assert a.models["served"].overall != b.models["served"].overall
    served = a.models["served"]
    assert [m["h"] for m in served.per_horizon] == list(range(1, 8))
    assert served.overall["samples"] == sum(m["samples"] for m in served.per_horizon)
    assert a.models["naive"].overall["relative_interval_score"] == 1.0
    lo, hi = a.ci["served"]["coverage"]
    assert lo <= served.overall["coverage"] <= hi and hi - lo > 0.005
    json.dumps(a.to_json(), allow_nan=False)


def test_the_coverage_guarantee_decides_which_rates_the_tuning_period_may_choose() -> None:
    """A year of scored forecasts must bring coverage within 0.03 of nominal whatever the
    regime: 4 * log(b) / (eta * forecasts a year) <= 0.03. Hourly series have 8,760 forecasts
    a year and may use any rate of the grid; daily ones only 0.2 with b = 1.5 (0.022; 0.1
    gives 0.044); weekly ones none, so the tightest is taken."""
    from coinpredict.base.timeframes import TIMEFRAMES
    from coinpredict.forecast.evaluation import BOUNDS, ETAS, admissible, guarantee

    grid = [(e, float(np.log(b)), 0.0) for e in ETAS for b in BOUNDS]
    assert guarantee(0.1, float(np.log(1.5)), TIMEFRAMES["1d"]) == pytest.approx(0.0444, abs=1e-4)
    assert admissible(grid, TIMEFRAMES["1h"], 0.03) == grid
    assert admissible(grid, TIMEFRAMES["1d"], 0.03) == [(0.2, float(np.log(1.5)), 0.0)]
    assert admissible(grid, TIMEFRAMES["1w"], 0.03) == [(0.2, float(np.log(1.5)), 0.0)]
    assert admissible(grid, TIMEFRAMES["1d"], None) == grid
    assert guarantee(0.0, 1.0, TIMEFRAMES["1h"]) == float("inf")


def test_split_chooses_only_among_rates_that_meet_the_guarantee() -> None:
    from coinpredict.forecast.evaluation import split_backtest

    frame = load("BTC_USDT-1d").filter(pl.col("timestamp") >= SPLIT - 800 * 86_400_000)
    free = split_backtest(frame, "1d", 7, SPLIT, tune_days=200, etas=(0.02,), tolerance=None)
    ruled = split_backtest(frame, "1d", 7, SPLIT, tune_days=200, etas=(0.02, 0.2), bounds=(1.5,))
    assert free.eta == 0.02 and len(free.candidates) == 2
    assert (ruled.eta, ruled.bound, ruled.candidates) == (0.2, 1.5, [(0.2, 1.5, 0.0)])
    assert ruled.to_json()["candidates"] == [[0.2, 1.5, 0.0]]


def test_split_needs_origins_after_the_split() -> None:
    from coinpredict.forecast.evaluation import split_backtest

    frame = load("BTC_USDT-1d").filter(pl.col("timestamp") < SPLIT)
    with pytest.raises(InsufficientHistoryError, match="insufficient history"):
        split_backtest(frame, "1d", 7, SPLIT)


def test_models_backtest_split_cli_on_stored_candles(settings, influx_http, settings_env) -> None:
    import os
    import subprocess
    import sys

    from helpers.samples import rows

    from coinpredict.base.series import Series
    from coinpredict.base.timeframes import TIMEFRAMES
    from coinpredict.store.candles import CandleStore
    from coinpredict.store.setup import init_storage

    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    cut = [r for r in rows("BTC_USDT-1d.csv") if r[0] >= SPLIT - 900 * 86_400_000]
    store.write(Series("binance", "BTC/USDT", TIMEFRAMES["1d"]), cut)
    env = {
        **os.environ,
        **settings_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT",
        "COINPREDICT_TIMEFRAMES": "1d",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coinpredict", "models", "backtest", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = cli("--split", "2021-07-01", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)[0]
    assert res["split"] == "2021-07-01T00:00:00Z" == res["first_origin"]
    assert set(res["models"]) == {"served", "ridge+online", "naive+online", "ridge", "naive"}
    served = res["models"]["served"]
    assert len(served["per_horizon"]) == 14 and list(served["per_symbol"]) == ["BTC/USDT"]
    assert res["choice"]["BTC/USDT"] in ("ridge", "naive")
    assert res["tuning"]["served"]["samples"] > 0
    assert len(res["ci"]["served"]["relative_interval_score"]) == 2
    saved = settings.state_dir / "backtests" / "BTC_USDT_1d-split.json"
    assert json.loads(saved.read_text())["split"] == res["split"]
    table = cli("--split", "2021-07-01")
    assert table.returncode == 0 and "relative_interval_score" in table.stdout
    bad = cli("--split", "July")
    assert bad.returncode != 0
    assert "--split: 'July' is not a date" in bad.stderr + bad.stdout
    late = cli("--split", "2030-01-01")
    assert late.returncode != 0 and "no stored closed candle after the split" in late.stderr


@pytest.mark.parametrize(
    ("learned", "expected"),
    [
        ((0.9, 0.04, 0.02, 100), "ridge"),  # better score, narrower
        ((0.9, 0.06, 0.03, 100), "naive"),  # better score, wider, covers no better
        ((0.9, 0.06, 0.01, 100), "ridge"),  # wider but covers closer to nominal
        ((1.1, 0.04, 0.01, 100), "naive"),  # worse score
    ],
)
def test_the_learned_band_must_earn_its_width(learned: tuple, expected: str) -> None:
    from coinpredict.forecast.evaluation import _pick

    naive = (1.0, 0.05, 0.02, 100)  # interval score, width, |coverage - level|, pairs
    assert _pick({"ridge": learned, "naive": naive}, "ridge") == expected
