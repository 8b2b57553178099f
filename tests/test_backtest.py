"""Rolling-origin backtest: honest origins, metrics, several series."""

from __future__ import annotations

import json
from typing import Any

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
