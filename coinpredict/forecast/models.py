"""Forecasters: ``naive`` (last close, empirical-quantile bands) and ``ridge`` (a shrunk linear
model on volatility-normalised log returns with volatility-scaled split-conformal bands).

Both are *direct* multi-horizon: one prediction per step ``h = 1..H`` from the same origin. Bands
are recomputed at every ``predict`` from the most recent out-of-sample residuals in the frame
given, so a model trained last week is calibrated on this week's residuals.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import polars as pl

from coinpredict.base.errors import ConfigError
from coinpredict.base.timeframes import HOUR_MS, TIMEFRAMES, Timeframe
from coinpredict.forecast import prep
from coinpredict.forecast.types import (
    DEFAULT_LEVEL,
    WIDE_LEVEL,
    Forecast,
    InsufficientHistoryError,
)


@runtime_checkable
class Forecaster(Protocol):
    """What the CLI, the backtest and the registry rely on."""

    name: str
    version: str | None
    tf: Timeframe
    horizon: int

    def fit(self, frame: pl.DataFrame) -> Self: ...

    def predict(
        self, frame: pl.DataFrame, *, horizon: int | None = None, level: float | None = None
    ) -> Forecast: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TfDefaults:
    window: int  # candles the model looks at (fit window)
    calib: int  # most recent origins whose out-of-sample residuals calibrate the bands
    lags: tuple[int, ...]
    vol_fast: float  # EWMA half-lives (candles) of the volatility estimate
    vol_slow: float
    calendar: tuple[str, ...]
    min_train: int  # rows the regression needs besides the calibration tail
    min_calib: int  # the calibration tail may shrink to this on a short history


TF_DEFAULTS: dict[str, TfDefaults] = {
    "1h": TfDefaults(17_520, 2_160, (3, 12, 24, 72), 12, 168, ("hour", "dow"), 500, 500),
    "1d": TfDefaults(1_460, 365, (3, 7, 30), 7, 60, ("dow",), 100, 120),
    "1w": TfDefaults(520, 78, (2, 4, 12), 4, 26, (), 40, 40),
    "1M": TfDefaults(240, 24, (2, 3, 6), 3, 12, (), 36, 24),
    "1m": TfDefaults(20_160, 1_440, (5, 15, 60), 15, 240, (), 1_000, 500),
}

MIN_CALIB = 20  # fewest residuals per horizon that may calibrate a band


def _tf(tf: Timeframe | str) -> Timeframe:
    return TIMEFRAMES[tf] if isinstance(tf, str) else tf


def _probs(n: int, levels: tuple[float, ...]) -> list[float]:
    """Finite-sample conformal ranks, as probabilities, of two-sided ``levels`` over ``n``."""
    probs = []
    for lv in levels:
        a = (1.0 - lv) / 2.0
        lo = (math.floor(a * (n + 1)) - 1) / max(n - 1, 1)
        hi = (math.ceil((1.0 - a) * (n + 1)) - 1) / max(n - 1, 1)
        probs += [min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)]
    return probs


def _wquantiles(scores: np.ndarray, weights: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Two-sided weighted conformal quantiles ``[lo_L1, hi_L1, ...]`` (Barber et al. 2023): the
    upper one is the smallest score whose cumulative weight reaches ``1 - a`` of the total plus
    the weight of the unseen test point (1, the most recent weight); the lower one mirrors it."""
    order = np.argsort(scores)
    srt = scores[order]
    ws = weights[order]
    up = np.cumsum(ws)
    down = np.cumsum(ws[::-1])
    total = up[-1] + 1.0
    last = len(srt) - 1
    out = []
    for lv in levels:
        p = (1.0 - (1.0 - lv) / 2.0) * total
        out.append(float(srt[::-1][min(int(np.searchsorted(down, p)), last)]))
        out.append(float(srt[min(int(np.searchsorted(up, p)), last)]))
    return np.asarray(out)


def _quantiles(scores: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Conformal quantiles of 1-D ``scores`` at two-sided ``levels``:
    ``[lo_L1, hi_L1, lo_L2, hi_L2, ...]`` (the k-th smallest score, k from the conformal rank)."""
    return linear_quantiles(scores, _probs(len(scores), levels))


def linear_quantiles(x: np.ndarray, probs: list[float]) -> np.ndarray:
    """Exactly ``np.quantile(x, probs, method="linear")`` for 1-D ``x`` (a test holds them
    equal bit for bit), with one partition and none of its argument handling: predict and the
    gate's backtest ask for quantiles once per step and origin, and numpy's wrapper cost more
    than the selection itself. ``x`` is partitioned in place."""
    n = len(x)
    if n == 0:
        return np.quantile(x, probs, method="linear")
    v = (n - 1) * np.asarray(probs, dtype=np.float64)
    prev = np.floor(v)
    gamma = v - prev
    lo = prev.astype(np.intp)
    hi = lo + 1
    edge = v >= n - 1
    lo[edge] = hi[edge] = n - 1
    edge = v < 0
    lo[edge] = hi[edge] = 0
    x.partition(np.unique(np.concatenate(([0, n - 1], lo, hi))))
    if np.isnan(x[-1]):
        return np.full(len(v), np.nan)
    a, b = x[lo], x[hi]
    d = b - a
    return np.where(gamma >= 0.5, b - d * (1 - gamma), a + d * gamma)


def _check_level(level: float) -> float:
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ConfigError(f"interval level must be between 0 and 1 (exclusive), got {level!r}")
    return lv


def band_offsets(mid: np.ndarray, scale: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """``(5, H)`` log offsets [point, lower, upper, lower_95, upper_95] from the origin close
    (``(k, 5, H)`` for ``(k, H)`` points and scales), ordered
    ``lower_95 <= lower <= point <= upper <= upper_95`` and kept finite."""
    mid = np.clip(mid, -30.0, 30.0)
    lo = np.minimum(np.clip(mid + qs[:, 0] * scale, -30.0, 30.0), mid)
    hi = np.maximum(np.clip(mid + qs[:, 1] * scale, -30.0, 30.0), mid)
    lo95 = np.minimum(np.clip(mid + qs[:, 2] * scale, -30.0, 30.0), lo)
    hi95 = np.maximum(np.clip(mid + qs[:, 3] * scale, -30.0, 30.0), hi)
    return np.stack([mid, lo, hi, lo95, hi95], axis=-2)


class BaseForecaster(ABC):
    """Shared plumbing: grid, volatility scale, conformal bands, the ``Forecast`` build."""

    name: ClassVar[str]
    format_version: ClassVar[int] = 1

    def __init__(
        self,
        tf: Timeframe | str,
        horizon: int,
        *,
        level: float = DEFAULT_LEVEL,
        window: int | None = None,
        calib: int | None = None,
        calib_half_life: float | None = None,
    ) -> None:
        self.tf = _tf(tf)
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        self.horizon = int(horizon)
        self.level = _check_level(level)
        d = TF_DEFAULTS[self.tf.code]
        self.window = int(window or d.window)
        self.calib = int(calib or d.calib)
        # Recency weighting of the calibration residuals (None: all weigh alike).
        self.calib_half_life = calib_half_life
        self.version: str | None = None
        self.fitted = False
        self.span: tuple[int, int] | None = None  # open times of first/last candle fitted
        self.n_fit = 0
        self.fit_seconds = 0.0

    # --- interface --------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> Self:
        t0 = time.perf_counter()
        g = prep.regularize(frame, self.tf, tail=self.window)
        need = self.min_history()
        if len(g) < need:
            raise InsufficientHistoryError(frame.height, need, what=f"{self.name} {self.tf}")
        self._fit(g)
        self.fitted = True
        self.span = (int(g.ts[0]), int(g.ts[-1]))
        self.n_fit = len(g)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict(
        self, frame: pl.DataFrame, *, horizon: int | None = None, level: float | None = None
    ) -> Forecast:
        H, lv = self._ask(horizon, level)
        g = prep.regularize(frame, self.tf, tail=self.predict_rows())
        self._need(g, frame.height)
        m, s = self._point_and_scale(g)  # (n, H) log-return forecasts and band scales
        n = len(g)
        qs = self._calibrate(g, m, s, n, H, lv, frame.height)
        rel = np.exp(band_offsets(m[n - 1, :H], s[n - 1, :H], qs))  # (5, H) / last close
        pts, lo, hi, lo95, hi95 = (float(g.close[-1]) * rel).tolist()
        origin = g.last_open
        return Forecast(
            origin_ms=origin,
            timeframe=self.tf.code,
            timestamps=[self.tf.add(origin, k) for k in range(1, H + 1)],
            close=pts,
            lower=lo,
            upper=hi,
            lower_95=lo95,
            upper_95=hi95,
            level=lv,
            model_name=self.name,
            model_version=self.version,
            last_close=float(g.close[-1]),
        )

    def band_path(
        self,
        frame: pl.DataFrame,
        rows: np.ndarray,
        *,
        horizon: int | None = None,
        level: float | None = None,
        calibrate_every: int = 1,
    ) -> np.ndarray:
        """Log offsets ``(len(rows), 5, H)`` of [point, lower, upper, lower_95, upper_95] from
        the origin close, as ``predict`` on ``frame[: r + 1]`` would give them for every
        ``r`` in ``rows`` (ascending) with this fitted model: point and scale use only rows up
        to each origin; the conformal quantiles are recomputed at every ``calibrate_every``-th
        origin (``predict`` recomputes them at every call). Used by the serving simulation."""
        H, lv = self._ask(horizon, level)
        last = int(rows[-1])
        sub = frame.slice(0, last + 1)
        span = int(sub["timestamp"][last] - sub["timestamp"][int(rows[0])]) // self.tf.step_ms
        g = prep.regularize(sub, self.tf, tail=self.predict_rows() + span + 1)
        self._need(g, sub.height)
        m, s = self._point_and_scale(g)
        pos = np.searchsorted(g.ts, sub["timestamp"].to_numpy()[rows])
        out = np.empty((len(rows), 5, H))
        for j in range(0, len(pos), calibrate_every):
            at = pos[j : j + calibrate_every]
            qs = self._calibrate(g, m, s, int(at[0]) + 1, H, lv, sub.height)
            out[j : j + len(at)] = band_offsets(m[at, :H], s[at, :H], qs)
        return out

    def _ask(self, horizon: int | None, level: float | None) -> tuple[int, float]:
        if not self.fitted:
            raise RuntimeError(f"{self.name} model is not fitted")
        H = self.horizon if horizon is None else int(horizon)
        if not 1 <= H <= self.horizon:
            raise ValueError(f"horizon {H} outside 1..{self.horizon} the model was fitted for")
        return H, self.level if level is None else _check_level(level)

    def _need(self, g: prep.Grid, have: int) -> None:
        need = self.min_predict_history()
        if len(g) < need:
            raise InsufficientHistoryError(have, need, what=f"{self.name} {self.tf}")

    def _calibrate(
        self, g: prep.Grid, m: np.ndarray, s: np.ndarray, n: int, H: int, lv: float, have: int
    ) -> np.ndarray:
        """Conformal quantiles ``(H, 4)`` of the scores of the origins before grid row ``n``
        whose outcome is known by then (the calibration of a forecast from row ``n - 1``)."""
        logc = np.log(g.close[:n])
        qs = np.empty((H, 4))
        hl = getattr(self, "calib_half_life", None)
        gaps = not g.observed[:n].all()
        for h in range(1, H + 1):
            lo_i = max(self._first_calib_row(), n - h - self.calib_count(n))
            # origins lo_i .. n-1-h (the last one with an outcome), as slices: no copies
            sc = (logc[lo_i + h : n] - logc[lo_i : n - h] - m[lo_i : n - h, h - 1]) / s[
                lo_i : n - h, h - 1
            ]
            age = np.arange(n - 1 - h - lo_i, -1, -1, dtype=np.float64)
            if gaps:
                ok = g.observed[lo_i : n - h] & g.observed[lo_i + h : n]
                sc, age = sc[ok], age[ok]
            if len(sc) < MIN_CALIB:
                raise InsufficientHistoryError(
                    have, self.min_predict_history() + MIN_CALIB, what=f"{self.name} calibration"
                )
            if hl and hl > 0:
                qs[h - 1] = _wquantiles(sc, np.exp2(-age / hl), (lv, WIDE_LEVEL))
            else:
                qs[h - 1] = _quantiles(sc, (lv, WIDE_LEVEL))
        return qs

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timeframe": self.tf.code,
            "horizon": self.horizon,
            "level": self.level,
            "window": self.window,
            "calib": self.calib,
            "features": self.features(),
        }

    def features(self) -> list[str]:
        return []

    # --- to specialise --------------------------------------------------------------------
    def min_history(self) -> int:
        return self.horizon + MIN_CALIB + 2

    def min_predict_history(self) -> int:
        return self.horizon + MIN_CALIB + 2

    def predict_rows(self) -> int:
        return self.window

    def calib_count(self, n: int) -> int:
        return self.calib

    def _first_calib_row(self) -> int:
        return 0

    @abstractmethod
    def _fit(self, g: prep.Grid) -> None: ...

    @abstractmethod
    def _point_and_scale(self, g: prep.Grid) -> tuple[np.ndarray, np.ndarray]: ...


class NaiveForecaster(BaseForecaster):
    """Last close; bands = empirical quantiles of the past h-step log returns in the window."""

    name = "naive"

    def calib_count(self, n: int) -> int:
        return n

    def _fit(self, g: prep.Grid) -> None:
        pass

    def _point_and_scale(self, g: prep.Grid) -> tuple[np.ndarray, np.ndarray]:
        n = len(g)  # read-only views of one number: nothing allocated per origin and step
        return np.broadcast_to(0.0, (n, self.horizon)), np.broadcast_to(1.0, (n, self.horizon))


@dataclass
class _Fitted:
    x_mean: np.ndarray
    x_std: np.ndarray
    beta: np.ndarray  # (p, H)
    shrink: np.ndarray  # (H,) in [0, 1]
    season: np.ndarray  # (24,) relative volatility per hour of day, or (1,)
    table: np.ndarray  # (len(season), H) summed squared factors per step
    weights: np.ndarray  # (H, 3) variance blend per step
    gammas: np.ndarray  # (H,) band scale = blend ** (gamma / 2); 0 = static, 1 = fully adaptive
    metrics: dict[str, Any] = field(default_factory=dict)


class RidgeForecaster(BaseForecaster):
    """Ridge regression of volatility-normalised h-step log returns, shrunk toward last close.

    Point: ``log C_{t+h} = log C_t + shrink_h * sigma_t * sqrt(h) * x_t . beta_h`` (no intercept,
    so no drift is extrapolated). ``shrink_h`` is chosen on a held-out tail (the last ``calib``
    origins, not used by the regression) by price MAE, and stays 0 unless the model beat
    last-close there clearly (gain > ``min_gain``, t > ``min_tstat``, in both halves of the
    tail); then it is halved again.
    Bands: split-conformal quantiles of the signed residuals divided by a volatility scale
    (EWMA blend ** gamma/2, times the hour-of-day profile on 1h), recency-weighted.
    """

    name = "ridge"

    def __init__(
        self,
        tf: Timeframe | str,
        horizon: int,
        *,
        level: float = DEFAULT_LEVEL,
        window: int | None = None,
        calib: int | None = None,
        calib_half_life: float | None = None,
        ridge: float = 0.05,
        min_gain: float = 0.02,
        min_tstat: float = 4.0,
        gammas: tuple[float, ...] = (1.0, 0.5),
    ) -> None:
        super().__init__(tf, horizon, level=level, window=window, calib=calib)
        # Recent residuals count more (weighted conformal); half-life = half the window.
        self.calib_half_life = (
            self.calib / 2 if calib_half_life is None else (calib_half_life or None)
        )
        d = TF_DEFAULTS[self.tf.code]
        self.lags = d.lags
        self.vol_fast = d.vol_fast
        self.vol_slow = d.vol_slow
        self.calendar = d.calendar
        self.min_train = d.min_train
        self.min_calib = min(d.min_calib, self.calib)
        self.ridge = float(ridge)
        self.min_gain = float(min_gain)
        self.min_tstat = float(min_tstat)
        self.gammas = tuple(float(x) for x in gammas)
        self.params: _Fitted | None = None

    # --- sizes -----------------------------------------------------------------------
    def _warm(self) -> int:
        return max(max(self.lags), int(self.vol_fast)) + 1

    def min_history(self) -> int:
        return self._warm() + self.min_train + self.min_calib + self.horizon

    def min_predict_history(self) -> int:
        return self._warm() + MIN_CALIB + self.horizon + 1

    def predict_rows(self) -> int:
        return min(self.window, self._warm() + self.calib + self.horizon + int(12 * self.vol_slow))

    def _first_calib_row(self) -> int:
        return self._warm()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            ridge=self.ridge,
            min_gain=self.min_gain,
            min_tstat=self.min_tstat,
            calib_half_life=self.calib_half_life,
        )
        if self.params is not None:
            d["shrink"] = [round(float(x), 3) for x in self.params.shrink]
            d["vol_blend"] = [round(float(v), 3) for v in self.params.weights[0]]
            d["vol_gamma"] = float(self.params.gammas[0])
        return d

    def features(self) -> list[str]:
        names = ["ret1"] + [f"ret{k}" for k in self.lags]
        names += ["vol_ratio", "range", "volume", "ma_gap"]
        if "hour" in self.calendar:
            names += ["hour_sin", "hour_cos"]
        if "dow" in self.calendar:
            names += ["dow_sin", "dow_cos"]
        return names

    # --- volatility -------------------------------------------------------------------
    def _hours(self, g: prep.Grid) -> np.ndarray:
        if "hour" in self.calendar:
            return ((g.ts // HOUR_MS) % 24).astype(np.int64)
        return np.zeros(len(g), dtype=np.int64)

    def _fit_season(self, g: prep.Grid, logc: np.ndarray) -> np.ndarray:
        """Relative volatility per hour of day (1h only; ones otherwise)."""
        if "hour" not in self.calendar:
            return np.ones(1)
        r = np.diff(logc, prepend=logc[0])
        ok = g.observed & np.roll(g.observed, 1)
        ok[0] = False
        hrs = self._hours(g)
        r2 = r * r
        base = float(np.mean(r2[ok])) if ok.any() else 0.0
        if base <= 0:
            return np.ones(24)
        f = np.ones(24)
        for hr in range(24):
            sel = ok & (hrs == hr)
            if sel.sum() >= 20:
                f[hr] = math.sqrt(float(np.mean(r2[sel])) / base)
        return np.clip(f, 0.5, 2.0)

    def _season_table(self, season: np.ndarray) -> np.ndarray:
        """``T[hour, h-1]`` = sum of squared factors of the ``h`` candles after an origin."""
        H = self.horizon
        k = len(season)
        T = np.empty((k, H))
        for hr in range(k):
            f2 = season[(hr + np.arange(1, H + 1)) % k] ** 2
            T[hr] = np.cumsum(f2)
        return T

    def _vols(
        self, g: prep.Grid, logc: np.ndarray, season: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(deseasonalised one-step sigma (n,), variance components (3, n))."""
        r = np.diff(logc, prepend=logc[0])
        hrs = self._hours(g)
        rt = r / season[hrs % len(season)]
        comps = np.stack(
            [prep.ewm_var(rt, hl) for hl in (self.vol_fast, self.vol_slow, 4 * self.vol_slow)]
        )
        pos = comps[2][comps[2] > 0]
        floor = (float(np.median(pos)) if len(pos) else 1e-12) * 1e-2 + 1e-18
        comps = np.maximum(comps, floor)
        sigma = np.sqrt(0.5 * comps[0] + 0.5 * comps[1])
        return sigma, comps

    def _scales(
        self,
        g: prep.Grid,
        comps: np.ndarray,
        weights: np.ndarray,
        gammas: np.ndarray,
        table: np.ndarray,
    ) -> np.ndarray:
        """Band scale ``s[i, h-1]`` for every origin and step."""
        var = (weights @ comps).T  # (n, H)
        hrs = self._hours(g) % table.shape[0]
        return var ** (gammas[None, :] / 2) * np.sqrt(table[hrs])

    # --- features --------------------------------------------------------------------
    def _design(
        self, g: prep.Grid, season: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        logc = np.log(g.close)
        sigma, comps = self._vols(g, logc, season)
        cols = [prep.lag_diff(logc, 1) / sigma]
        for k in self.lags:
            cols.append(prep.lag_diff(logc, k) / (sigma * math.sqrt(k)))
        cols.append(0.5 * np.log(comps[0] / comps[1]))
        cols.append(np.log(g.high / g.low) / sigma)
        lv = np.log1p(g.volume)
        cols.append(lv - prep.rolling_mean(lv, int(self.vol_slow)))
        cols.append((logc - prep.rolling_mean(logc, max(self.lags))) / sigma)
        if "hour" in self.calendar:
            a = 2 * math.pi * ((g.ts // HOUR_MS) % 24) / 24.0
            cols += [np.sin(a), np.cos(a)]
        if "dow" in self.calendar:
            a = 2 * math.pi * (((g.ts // (24 * HOUR_MS)) + 3) % 7) / 7.0
            cols += [np.sin(a), np.cos(a)]
        X = np.clip(np.column_stack(cols), -6.0, 6.0)
        return X, sigma, comps, logc

    def _raw(self, X: np.ndarray) -> np.ndarray:
        p = self.params
        assert p is not None
        return ((X - p.x_mean) / p.x_std) @ p.beta

    # --- fit / predict ---------------------------------------------------------------------
    def _fit(self, g: prep.Grid) -> None:
        H = self.horizon
        logc0 = np.log(g.close)
        season = self._fit_season(g, logc0)
        X, sigma, comps, logc = self._design(g, season)
        n = len(g)
        sq = np.sqrt(np.arange(1, H + 1))
        warm = self._warm()
        # A short history shrinks the held-out tail (down to min_calib), never the regression
        # below min_train.
        calib = max(self.min_calib, min(self.calib, n - warm - H - self.min_train))
        t_end = n - calib - H  # training origins: [warm, t_end) -> outcomes < n - calib
        idx = np.arange(warm, t_end)
        Y = np.empty((len(idx), H))
        ok = g.observed[idx].copy()
        for h in range(1, H + 1):
            Y[:, h - 1] = (logc[idx + h] - logc[idx]) / (sigma[idx] * sq[h - 1])
            ok &= g.observed[idx + h]
        Xt, Yt = X[idx[ok]], np.clip(Y[ok], -8.0, 8.0)
        mu = Xt.mean(axis=0)
        sd = Xt.std(axis=0)
        sd[sd < 1e-9] = 1.0
        Z = (Xt - mu) / sd
        p = Z.shape[1]
        lam = self.ridge * len(Z)
        beta = np.linalg.solve(Z.T @ Z + lam * np.eye(p), Z.T @ Yt)
        table = self._season_table(season)
        self.params = _Fitted(
            mu, sd, beta, np.zeros(H), season, table, np.zeros((H, 3)), np.ones(H)
        )
        # On the held-out tail: shrinkage toward last close (by price MAE), then the volatility
        # blend per step that gives the narrowest calibrated band. One origin set for all steps.
        i = np.arange(max(t_end, warm), n - H)
        keep = g.observed[i].copy()
        for h in range(1, H + 1):
            keep &= g.observed[i + h]
        i = i[keep]
        steps = np.arange(1, H + 1)
        R = logc[i[:, None] + steps[None, :]] - logc[i][:, None]  # (m, H) realised log returns
        M = self._raw(X[i]) * sigma[i][:, None] * sq[None, :]  # (m, H) unshrunk forecasts
        grid = np.linspace(0.0, 1.0, 11)
        actual = np.exp(R)
        maes = np.stack([np.mean(np.abs(actual - np.exp(a * M)), axis=0) for a in grid])
        best = np.argmin(maes, axis=0)
        base = np.maximum(maes[0], 1e-300)
        gains = np.where(maes[0] > 0, 1.0 - maes[best, steps - 1] / base, 0.0)
        # Significance of the gain: paired |error| differences, overlap-adjusted sample size.
        d = np.abs(actual - 1.0) - np.abs(actual - np.exp(grid[best][None, :] * M))
        n_eff = np.maximum(len(i) / steps, 2.0)
        tstat = d.mean(axis=0) / np.maximum(d.std(axis=0) / np.sqrt(n_eff), 1e-300)
        half = len(i) // 2
        stable = (d[:half].mean(axis=0) > 0) & (d[half:].mean(axis=0) > 0)  # both halves gain
        edge = (gains > self.min_gain) & (tstat > self.min_tstat) & stable
        shrink = np.where(edge, 0.5 * grid[best], 0.0)
        resid = R - shrink[None, :] * M
        sel = np.arange(H)
        hrs = self._hours(g)[i] % table.shape[0]
        seas = np.sqrt(table[hrs][:, sel])  # (m, S)
        cands: list[tuple[tuple[float, float, float], float]] = []
        scales = []
        for w in VOL_BLENDS:
            var = (np.asarray(w) @ comps[:, i])[:, None]
            for gam in self.gammas:
                if gam == 0 and any(c[1] == 0 for c in cands):
                    continue  # the static scale does not depend on the blend
                cands.append((w, gam))
                scales.append((var ** (gam / 2)) * seas)
        C = np.stack(scales)  # (K, m, S)
        probs = _probs(len(i), (self.level, WIDE_LEVEL))
        q = np.quantile(resid[:, sel][None, :, :] / C, probs, axis=1)  # (4, K, S)
        width = ((q[1] - q[0]) + 0.5 * (q[3] - q[2])) * C.mean(axis=1)  # (K, S)
        # One blend for all steps (pooled), so that the choice hardly overfits the tail.
        k = int(np.argmin((width / np.maximum(width.min(axis=0), 1e-300)).sum(axis=1)))
        weights = np.tile(np.asarray(cands[k][0], dtype=np.float64), (H, 1))
        gammas = np.full(H, cands[k][1], dtype=np.float64)
        self.params.shrink = shrink
        self.params.weights = weights
        self.params.gammas = gammas
        self.params.metrics = {"holdout_gain": [round(float(x), 5) for x in gains]}

    def _point_and_scale(self, g: prep.Grid) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        assert p is not None
        X, sigma, comps, _ = self._design(g, p.season)
        sq = np.sqrt(np.arange(1, self.horizon + 1))
        if np.any(p.shrink > 0):
            m = self._raw(X) * (p.shrink * sq)[None, :] * sigma[:, None]
        else:
            m = np.zeros((len(g), self.horizon))
        return m, self._scales(g, comps, p.weights, p.gammas, p.table)


#: Candidate mixes of the (fast, slow, long) variance estimates for the band scale.
VOL_BLENDS: tuple[tuple[float, float, float], ...] = (
    (0.5, 0.5, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.5, 0.5),
    (0.0, 0.0, 1.0),
)


MODELS: dict[str, type[BaseForecaster]] = {
    NaiveForecaster.name: NaiveForecaster,
    RidgeForecaster.name: RidgeForecaster,
}
#: The model ``train`` fits by default.
DEFAULT_MODEL = RidgeForecaster.name


def make_model(name: str, tf: Timeframe | str, horizon: int, **params: Any) -> BaseForecaster:
    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"model: unknown model {name!r} (known: {', '.join(MODELS)})") from None
    return cls(tf, horizon, **params)


def candles_needed(tf: Timeframe | str, horizon: int, purpose: str = "predict") -> int:
    """How many of the newest candles a caller should load (more never hurts).

    ``predict``: enough for any model, including the built-in naive's fit window.
    ``train``: two fit windows, so that the backtest behind the metrics has origins spread
    over a full window after the model's minimum history.
    """
    tf = _tf(tf)
    window = TF_DEFAULTS[tf.code].window
    need = max(window, RidgeForecaster(tf, horizon).min_history() + horizon)
    if purpose == "predict":
        return need
    if purpose == "train":
        return 2 * need
    raise ValueError(f"purpose must be 'predict' or 'train', not {purpose!r}")
