"""Forecasters: the Forecast contract, gaps, short history, calibration plumbing, properties."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers.samples import load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coinpredict.base.errors import ConfigError
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.forecast.models import (
    NaiveForecaster,
    RidgeForecaster,
    candles_needed,
    make_model,
)
from coinpredict.forecast.types import (
    DEFAULT_HORIZONS,
    Forecast,
    InsufficientHistoryError,
    InvalidFrameError,
)

DATA = Path(__file__).parent / "data"


def random_walk(n: int, seed: int, *, vol: float = 0.03, phi: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    eps = rng.standard_t(4, size=n) * vol / math.sqrt(2)
    r = np.empty(n)
    prev = 0.0
    for i in range(n):
        prev = phi * prev + eps[i]
        r[i] = prev
    close = 100 * np.exp(np.cumsum(r))
    openp = np.concatenate(([100.0], close[:-1]))
    hi = np.maximum(openp, close) * (1 + np.abs(rng.normal(0, vol / 3, n)))
    lo = np.minimum(openp, close) * (1 - np.abs(rng.normal(0, vol / 3, n)))
    start = 1_600_000_000_000 // DAY_MS * DAY_MS
    return pl.DataFrame(
        {
            "timestamp": pl.Series(start + np.arange(n, dtype=np.int64) * DAY_MS, dtype=pl.Int64),
            "open": openp,
            "high": hi,
            "low": lo,
            "close": close,
            "volume": rng.uniform(10, 100, n),
        }
    )


def assert_contract(fc: Forecast, frame: pl.DataFrame, tf_code: str, horizon: int) -> None:
    tf = TIMEFRAMES[tf_code]
    last_open = int(frame["timestamp"][-1])
    assert fc.origin_ms == last_open
    assert fc.timestamps[0] == tf.close_time(last_open)
    assert fc.timestamps == [tf.add(last_open, k) for k in range(1, horizon + 1)]
    fc.check()
    assert fc.horizon == horizon


@pytest.mark.parametrize(("name", "tf"), [("BTC_USDT-1d", "1d"), ("BTC_USDT-1w", "1w")])
def test_naive_forecast_contract(name: str, tf: str) -> None:
    frame = load(name)
    H = DEFAULT_HORIZONS[tf]
    fc = NaiveForecaster(tf, H).fit(frame).predict(frame)
    assert_contract(fc, frame, tf, H)
    assert fc.close == [float(frame["close"][-1])] * H  # last close, exactly
    assert fc.model_name == "naive" and fc.level == 0.8
    widths = [u - lo for lo, u in zip(fc.lower, fc.upper, strict=True)]
    assert widths[-1] > widths[0]  # longer horizons are less certain


def test_monthly_steps_are_calendar_months() -> None:
    frame = load("BTC_USDT-1M")
    fc = NaiveForecaster("1M", 6).fit(frame).predict(frame)
    assert_contract(fc, frame, "1M", 6)
    rows = fc.rows()
    assert rows[0]["timestamp"] == "2022-10-01T00:00:00Z"
    assert rows[-1]["timestamp"] == "2023-03-01T00:00:00Z"


def test_ridge_daily_contract_and_shorter_horizon() -> None:
    frame = load("BTC_USDT-1d")
    model = RidgeForecaster("1d", 14).fit(frame)
    fc = model.predict(frame)
    assert_contract(fc, frame, "1d", 14)
    fc5 = model.predict(frame, horizon=5, level=0.9)
    assert_contract(fc5, frame, "1d", 5)
    assert fc5.level == 0.9
    assert fc5.upper[0] - fc5.lower[0] >= fc.upper[0] - fc.lower[0] - 1e-9  # wider at 90%
    with pytest.raises(ValueError, match="horizon 20 outside 1..14"):
        model.predict(frame, horizon=20)


def test_ridge_hourly_with_real_gaps_never_changes_the_frame() -> None:
    frame = load("BTC_USDT-1h")  # holds the 33 h outage of 2018-02-08 and more gaps
    before = frame.clone()
    model = RidgeForecaster("1h", 24, window=8000, calib=1500).fit(frame)
    fc = model.predict(frame)
    assert frame.equals(before)
    assert_contract(fc, frame, "1h", 24)
    # Forecast from just after the 2018-02-08 outage: the grid is filled only internally.
    cut = frame.filter(pl.col("timestamp") <= 1_518_220_800_000)  # 2018-02-10T00:00Z
    fc2 = model.predict(cut)
    assert_contract(fc2, cut, "1h", 24)


def test_insufficient_history_message() -> None:
    frame = load("BTC_USDT-1d").head(10)
    with pytest.raises(InsufficientHistoryError) as exc:
        NaiveForecaster("1d", 14).fit(frame)
    assert str(exc.value) == "insufficient history: 10 candles, need at least 36"
    assert exc.value.what == "naive 1d"
    assert exc.value.have == 10 and exc.value.need == 36
    with pytest.raises(InsufficientHistoryError, match=r"^insufficient history: 0 candles"):
        NaiveForecaster("1d", 14).fit(frame.head(0))
    with pytest.raises(
        InsufficientHistoryError,
        match=r"^insufficient history: 200 candles, need at least 265$",
    ):
        RidgeForecaster("1d", 14).fit(load("BTC_USDT-1d").head(200))
    short = load("BTC_USDT-1d").head(265)  # just enough: the calibration tail shrinks to fit
    assert_contract(RidgeForecaster("1d", 14).fit(short).predict(short), short, "1d", 14)


def test_invalid_frames_are_refused() -> None:
    frame = load("BTC_USDT-1d").head(100)
    with pytest.raises(InvalidFrameError, match="ascending"):
        NaiveForecaster("1d", 5).fit(frame.reverse())
    with pytest.raises(InvalidFrameError, match="lacks column"):
        NaiveForecaster("1d", 5).fit(frame.drop("close"))
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 50).then(0.0).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(InvalidFrameError, match="non-positive close"):
        NaiveForecaster("1d", 5).fit(bad)


def test_interval_level_must_be_a_probability() -> None:
    frame = load("BTC_USDT-1d")
    with pytest.raises(ConfigError, match="interval level must be between 0 and 1"):
        NaiveForecaster("1d", 5, level=80)
    model = NaiveForecaster("1d", 5).fit(frame)
    with pytest.raises(ConfigError):
        model.predict(frame, level=1.0)
    fc = model.predict(frame, level=0.99)  # wider than the 95% band: both are kept ordered
    assert fc.lower_95 == fc.lower and fc.upper_95 == fc.upper
    fc.check()


def test_make_model_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="model: unknown model .prophet."):
        make_model("prophet", "1h", 24)


def test_ridge_shrinks_to_last_close_on_a_random_walk() -> None:
    frame = random_walk(1500, seed=7)
    model = RidgeForecaster("1d", 14).fit(frame)
    assert model.params is not None and not model.params.shrink.any()
    fc = model.predict(frame)
    assert fc.close == [float(frame["close"][-1])] * 14


def test_ridge_uses_a_real_edge() -> None:
    frame = random_walk(1500, seed=3, vol=0.02, phi=0.6)  # strongly autocorrelated returns
    model = RidgeForecaster("1d", 14).fit(frame)
    assert model.params is not None and model.params.shrink[0] > 0
    fc = model.predict(frame)
    assert fc.close[0] != float(frame["close"][-1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=40, max_value=400),
    seed=st.integers(min_value=0, max_value=10_000),
    vol=st.floats(min_value=0.0005, max_value=0.2),
    horizon=st.integers(min_value=1, max_value=14),
    level=st.sampled_from([0.5, 0.8, 0.9]),
)
def test_bands_ordered_finite_positive_on_random_walks(
    n: int, seed: int, vol: float, horizon: int, level: float
) -> None:
    frame = random_walk(n, seed, vol=vol)
    naive = NaiveForecaster("1d", horizon, level=level).fit(frame).predict(frame)
    assert_contract(naive, frame, "1d", horizon)
    ridge = RidgeForecaster("1d", horizon, level=level, calib=30)
    ridge.min_train = 20
    if n >= ridge.min_history():
        fc = ridge.fit(frame).predict(frame)
        assert_contract(fc, frame, "1d", horizon)


def test_flat_prices_still_give_valid_bands() -> None:
    frame = random_walk(200, seed=1).with_columns(
        pl.lit(5.0).alias("close"), pl.lit(5.0).alias("high"), pl.lit(5.0).alias("low")
    )
    fc = NaiveForecaster("1d", 7).fit(frame).predict(frame)
    assert_contract(fc, frame, "1d", 7)
    ridge = RidgeForecaster("1d", 7, calib=40)
    ridge.min_train = 50
    assert_contract(ridge.fit(frame).predict(frame), frame, "1d", 7)


def test_package_import_is_light() -> None:
    code = (
        "import sys, coinpredict.forecast as f\n"
        "heavy = [m for m in ('sklearn', 'joblib', 'polars', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "assert f.DEFAULT_HORIZONS['1h'] == 24\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_weighted_conformal_quantiles() -> None:
    from coinpredict.forecast.models import _quantiles, _wquantiles

    rng = np.random.default_rng(0)
    scores = rng.standard_normal(999)
    flat = _wquantiles(scores, np.ones(999), (0.8, 0.95))
    plain = _quantiles(scores, (0.8, 0.95))
    assert np.allclose(flat, plain, atol=0.02)
    assert flat[2] <= flat[0] < 0 < flat[1] <= flat[3]
    # When recent residuals are twice as large, recency weighting widens the band.
    drift = np.concatenate([scores[:500], 2 * scores[500:]])
    w = np.exp2(-(998 - np.arange(999)) / 100)
    assert _wquantiles(drift, w, (0.8,))[1] > _quantiles(drift, (0.8,))[1]
    # Few residuals: the 95% band is the widest score available, never beyond.
    few = np.arange(1.0, 11.0)
    assert _wquantiles(few, np.ones(10), (0.95,)).tolist() == [1.0, 10.0]


def test_candles_needed() -> None:
    assert candles_needed("1h", 24) == 17_520
    assert candles_needed("1h", 24, "train") == 35_040
    assert candles_needed("1d", 14) == 1_460
    assert candles_needed("1M", 6) >= RidgeForecaster("1M", 6).min_history()
    with pytest.raises(ValueError):
        candles_needed("1d", 14, "export")


def test_extreme_volatility_stays_finite() -> None:
    frame = random_walk(300, seed=5, vol=3.0)  # prices moving by e^3 a day
    fc = NaiveForecaster("1d", 14).fit(frame).predict(frame)
    assert_contract(fc, frame, "1d", 14)


@pytest.mark.parametrize("name", ["ridge", "naive"])
def test_band_path_serves_what_predict_serves(name: str) -> None:
    """The backtest's many-origin path against predict on the frame cut at each origin."""
    frame = load("BTC_USDT-1h")
    model = make_model(name, "1h", 24).fit(frame.head(9000))
    rows = np.array([9000, 9001, 9050, 9400])
    path = model.band_path(frame, rows, calibrate_every=1)
    for j, r in enumerate(rows):
        fc = model.predict(frame.head(int(r) + 1))
        bands = np.array([fc.close, fc.lower, fc.upper, fc.lower_95, fc.upper_95])
        # equal up to where the volatility EWMAs start (the path reads a longer tail)
        assert np.allclose(path[j], np.log(bands / fc.last_close), atol=1e-6), r


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, 1.5]),
        min_size=1,
        max_size=400,
    ),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    st.floats(0.01, 0.99),
)
def test_quantiles_are_numpys_linear_quantiles_bit_for_bit(
    values: list[float], probs: list[float], level: float
) -> None:
    from coinpredict.forecast.models import _probs, _quantiles, linear_quantiles

    x = np.array(values)
    want = np.quantile(x, probs, method="linear")
    assert np.array_equal(linear_quantiles(x.copy(), probs), want)
    conformal = np.quantile(x, _probs(len(x), (level, 0.95)), method="linear")
    assert np.array_equal(_quantiles(x.copy(), (level, 0.95)), conformal)
    assert np.isnan(linear_quantiles(np.r_[x, np.nan], probs)).all()
