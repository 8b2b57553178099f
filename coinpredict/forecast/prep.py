"""Model-input preprocessing: the candle frame -> a regular grid of numpy arrays.

Gaps are forward-filled *here only* (close carried, volume 0, ``observed`` False) on a private copy;
the caller's frame is never changed. Everything downstream works on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from coinpredict.base.timeframes import Timeframe
from coinpredict.forecast.types import InvalidFrameError

REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass(slots=True)
class Grid:
    """A regular candle grid (gaps filled) of the last ``len(ts)`` candles of a frame."""

    ts: np.ndarray  # int64 open times, regular on the timeframe grid
    close: np.ndarray  # float64, > 0
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    observed: np.ndarray  # bool: a real candle (False = filled gap)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def last_open(self) -> int:
        return int(self.ts[-1])


def check_frame(frame: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InvalidFrameError(f"candle frame lacks column(s): {', '.join(missing)}")


def _month_indexes(ts: np.ndarray) -> np.ndarray:
    d = ts.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    return d - d[0]


def regularize(frame: pl.DataFrame, tf: Timeframe, *, tail: int | None = None) -> Grid:
    """The last ``tail`` grid points (all when None) of ``frame``, gaps forward-filled."""
    check_frame(frame)
    if frame.height == 0:
        e = np.empty(0)
        return Grid(np.empty(0, dtype=np.int64), e, e, e, e, np.empty(0, dtype=bool))
    if tail is not None:
        # A gap only makes the grid longer than the row count, so this many rows always suffice.
        frame = frame.tail(tail)
    ts = frame["timestamp"].to_numpy().astype(np.int64, copy=False)
    cols = [
        frame[c].cast(pl.Float64).to_numpy().astype(np.float64, copy=False)
        for c in ("close", "high", "low", "volume")
    ]
    close = cols[0]
    if len(ts) > 1 and not np.all(np.diff(ts) > 0):
        raise InvalidFrameError("candle frame timestamps must be ascending and unique")
    if not np.all(np.isfinite(close)) or not np.all(close > 0):
        raise InvalidFrameError("candle frame has a non-finite or non-positive close")
    if tf.is_monthly:
        idx = _month_indexes(ts)
    else:
        idx = (ts - ts[0]) // tf.step_ms
    n = int(idx[-1]) + 1
    if n == len(ts):
        high, low, vol = (np.where(np.isfinite(c), c, np.nan) for c in cols[1:])
        grid_ts = ts
        observed = np.ones(n, dtype=bool)
        close = close.copy()
    else:
        observed = np.zeros(n, dtype=bool)
        observed[idx] = True
        pos = np.maximum.accumulate(np.where(observed, np.arange(n), 0))
        src = np.full(n, -1, dtype=np.int64)
        src[idx] = np.arange(len(ts))
        take = src[pos]
        close = close[take]
        high = np.where(observed, cols[1][take], close)
        low = np.where(observed, cols[2][take], close)
        vol = np.where(observed, cols[3][take], 0.0)
        if tf.is_monthly:
            grid_ts = np.array([tf.add(int(ts[0]), int(i)) for i in range(n)], dtype=np.int64)
        else:
            grid_ts = ts[0] + np.arange(n, dtype=np.int64) * tf.step_ms
    # Bad high/low/volume values must not poison features: fall back to close / 0.
    high = np.where(np.isfinite(high) & (high > 0), high, close)
    low = np.where(np.isfinite(low) & (low > 0), low, close)
    vol = np.where(np.isfinite(vol) & (vol >= 0), vol, 0.0)
    g = Grid(grid_ts, close, np.maximum(high, close), np.minimum(low, close), vol, observed)
    if tail is not None and len(g) > tail:
        g = Grid(*(a[-tail:] for a in (g.ts, g.close, g.high, g.low, g.volume, g.observed)))
    return g


def ewm_var(r: np.ndarray, half_life: float) -> np.ndarray:
    """Exponentially weighted mean of ``r**2`` (recursive, no bias correction beyond start)."""
    return (
        pl.Series(r * r)
        .ewm_mean(half_life=half_life, adjust=True, min_samples=1)
        .to_numpy()
        .astype(np.float64, copy=False)
    )


def rolling_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Trailing mean over ``k`` points (shorter at the start)."""
    c = np.concatenate(([0.0], np.cumsum(x)))
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - k, 0)
    return (c[i] - c[lo]) / (i - lo)


def lag_diff(x: np.ndarray, k: int) -> np.ndarray:
    """``x[i] - x[i-k]`` (0 where ``i < k``)."""
    out = np.zeros_like(x)
    if k < len(x):
        out[k:] = x[k:] - x[:-k]
    return out
