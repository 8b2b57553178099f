"""Online calibration: convergence to the nominal miss rate, bounds, state, and that the
backtest's serving simulation does exactly what ``predict`` does one forecast at a time."""

from __future__ import annotations

import numpy as np
import pytest

from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.forecast import online
from coinpredict.forecast.evaluation import SeriesData, track
from coinpredict.forecast.online import BOUND, OnlineState
from coinpredict.forecast.types import Forecast

D1 = TIMEFRAMES["1d"]
T0 = 1_600_000_000_000 // DAY_MS * DAY_MS


def _forecast(origin: int, c0: float, half_width: float, H: int) -> Forecast:
    """A last-close forecast whose log bands are +-half_width (95%: twice that)."""
    f = np.exp(half_width * np.sqrt(np.arange(1, H + 1)))
    return Forecast(
        origin_ms=origin,
        timeframe="1d",
        timestamps=[D1.add(origin, k) for k in range(1, H + 1)],
        close=[c0] * H,
        lower=(c0 / f).tolist(),
        upper=(c0 * f).tolist(),
        lower_95=(c0 / f**2).tolist(),
        upper_95=(c0 * f**2).tolist(),
        level=0.8,
        model_name="naive",
        model_version="builtin",
        last_close=c0,
    )


def _walk(n: int, seed: int, vol: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, 1, n) * vol))


def _serve_all(
    closes: np.ndarray, half_width: float, H: int, eta_common: float = 0.0
) -> tuple[list[Forecast], OnlineState]:
    """``predict`` one origin at a time: score what closed, then serve the next forecast."""
    state = OnlineState.fresh("builtin", H, 0.8)
    served = []
    for i in range(len(closes) - H):
        origin = T0 + i * DAY_MS
        known = {T0 + k * DAY_MS: float(closes[k]) for k in range(max(0, i - 2 * H), i + 1)}
        state.observe(known, origin, online.ETA, BOUND, eta_common)
        served.append(state.serve(_forecast(origin, float(closes[i]), half_width, H)))
    return served, state


def _coverage(served: list[Forecast], closes: np.ndarray, start: int = 0) -> float:
    hit = []
    for i, fc in enumerate(served[start:], start=start):
        for k in range(fc.horizon):
            hit.append(fc.lower[k] <= closes[i + k + 1] <= fc.upper[k])
    return float(np.mean(hit))


def test_too_narrow_bands_are_widened_to_nominal_coverage() -> None:
    closes = _walk(3000, 1, np.full(3000, 0.02))
    raw, _ = _serve_all(closes, 0.0, 3)  # theta stays; a zero-width band never covers
    served, state = _serve_all(closes, 0.012, 3)  # z ~ 0.6: raw coverage ~ 0.45
    assert _coverage(raw, closes) == 0.0
    assert 0.77 <= _coverage(served, closes, 1000) <= 0.83
    assert np.all(state.theta[:, :2] > 0.3)  # the main band was widened
    assert state.scored == 3 * 2994 + 2 + 1  # every step whose candle closed, once


def test_a_calm_regime_narrows_the_bands_and_a_storm_widens_them() -> None:
    vol = np.r_[np.full(1500, 0.04), np.full(1500, 0.016)]
    closes = _walk(3000, 2, vol)
    served, _ = _serve_all(closes, 0.05, 2)
    early = np.mean([np.log(f.upper[0] / f.lower[0]) for f in served[1200:1500]])
    late = np.mean([np.log(f.upper[0] / f.lower[0]) for f in served[2700:]])
    assert late < 0.6 * early
    assert 0.75 <= _coverage(served, closes, 2000) <= 0.85


def test_theta_never_leaves_its_bounds() -> None:
    state = OnlineState.fresh("v1", 2, 0.8)
    for i in range(500):  # every candle far outside every band
        origin = T0 + i * DAY_MS
        state.observe({origin: 1e6 if i % 2 else 1e-6}, origin)
        state.serve(_forecast(origin, 1.0, 0.01, 2))
    assert np.all(np.abs(state.theta) <= BOUND + 1e-12)
    assert state.theta[0, 0] == pytest.approx(BOUND) or state.theta[0, 1] == pytest.approx(BOUND)


def test_state_round_trip_and_foreign_files_are_refused() -> None:
    closes = _walk(60, 3, np.full(60, 0.02))
    _, state = _serve_all(closes, 0.02, 3)
    back = OnlineState.from_json(state.to_json())
    assert np.allclose(back.theta, state.theta, atol=1e-6)
    assert [p.timestamps for p in back.pending] == [p.timestamps for p in state.pending]
    assert back.fits("builtin", 3, 0.8) and not back.fits("v2", 3, 0.8)
    assert not back.fits("builtin", 4, 0.8) and not back.fits("builtin", 3, 0.9)
    for bad in ({}, {"format_version": 1, "theta": [[0.0, 0.0]]}, [], "x"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            OnlineState.from_json(bad)


@pytest.mark.parametrize("eta_common", [0.0, 0.01])
def test_simulation_serves_exactly_what_predict_serves(eta_common: float) -> None:
    """evaluation.track (vectorised, the backtest) against OnlineState (predict), with and
    without the term shared by every step."""
    H, n = 3, 400
    closes = _walk(n + H, 4, np.r_[np.full(200, 0.01), np.full(n + H - 200, 0.03)])
    served, state = _serve_all(closes, 0.015, H, eta_common)
    assert (np.abs(state.common).max() > 0) == (eta_common > 0)
    k = len(served)
    ts = T0 + np.arange(k, dtype=np.int64) * DAY_MS
    targets = ts[:, None] + np.arange(1, H + 1)[None, :] * DAY_MS
    rows = np.arange(k)
    actual = np.log(closes[rows[:, None] + np.arange(1, H + 1)[None, :]] / closes[rows][:, None])
    data = SeriesData("X", rows, ts, targets, actual, np.ones(k))
    base = np.stack(
        [
            np.log(np.array([f.close, f.lower, f.upper, f.lower_95, f.upper_95]) / f.last_close)
            for f in (_forecast(0, 1.0, 0.015, H) for _ in range(k))
        ]
    )
    sim = track(data, base, 0.8, online.ETA, BOUND, eta_common)
    for j in (0, 10, 199, 250, k - 1):
        want = np.log(np.array([served[j].lower, served[j].upper]) / closes[j])
        assert np.allclose(sim[j, 1:3], want, atol=1e-9), j


def test_the_shared_term_follows_a_calmer_regime_faster() -> None:
    """After volatility halves, a 14-step daily band calibrated per step only keeps
    over-covering for months; with the term shared by every step it is back near nominal
    sooner (it learns from all 14 outcomes of each day)."""
    H = 14
    closes = _walk(1300, 5, np.r_[np.full(800, 0.04), np.full(500, 0.02)])
    per_step, _ = _serve_all(closes, 0.05, H)
    shared, state = _serve_all(closes, 0.05, H, 0.005)
    after = (830, 950)  # the first months after the change
    cov_step = _coverage(per_step[: after[1]], closes, after[0])
    cov_shared = _coverage(shared[: after[1]], closes, after[0])
    assert cov_shared < cov_step - 0.03
    assert abs(cov_shared - 0.8) < abs(cov_step - 0.8)
    back = OnlineState.from_json(state.to_json())
    assert np.allclose(back.common, state.common, atol=1e-6) and back.bound == state.bound
