"""The small vocabulary every forecaster shares: the result type, the errors, the defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from coinpredict.base.errors import CoinpredictError
from coinpredict.base.timeframes import iso

#: Forecast horizon (number of candles) per timeframe when the caller has no setting.
DEFAULT_HORIZONS: dict[str, int] = {"1h": 24, "1d": 14, "1w": 8, "1M": 6}
#: Nominal coverage of the main interval; 0.95 is always computed as well.
DEFAULT_LEVEL = 0.8
WIDE_LEVEL = 0.95


class InsufficientHistoryError(CoinpredictError):
    """The series is too short for the model (message names both counts)."""

    def __init__(self, have: int, need: int, *, what: str = "") -> None:
        super().__init__(f"insufficient history: {have} candles, need at least {need}")
        self.have = have
        self.need = need
        self.what = what  # which model / step needed them


class InvalidFrameError(CoinpredictError):
    """The candle frame handed to a forecaster breaks its contract (columns, order, values)."""


class PromotionRefused(CoinpredictError):  # noqa: N818 - the name is the contract
    """The quality gate refused to promote a shadow; the message names the failed condition."""

    def __init__(self, message: str, *, condition: str, report: dict[str, Any] | None = None):
        super().__init__(message)
        self.condition = condition
        self.report = report or {}


@dataclass(frozen=True, slots=True)
class Forecast:
    """One forecast of a series from its last closed candle.

    ``timestamps[i]`` is the open time of the candle whose *close* entry ``i`` forecasts:
    ``timestamps[0]`` is the close time of the last closed candle (``origin_ms``), then one per
    following candle (``Timeframe.add``). Bands always satisfy
    ``lower_95 <= lower <= close <= upper <= upper_95``, all finite and positive.
    """

    origin_ms: int  # open time of the last closed candle the forecast used
    timeframe: str
    timestamps: list[int]
    close: list[float]
    lower: list[float]
    upper: list[float]
    lower_95: list[float]
    upper_95: list[float]
    level: float
    model_name: str
    model_version: str | None = None
    last_close: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return len(self.timestamps)

    def check(self) -> Forecast:
        """Raise ``ValueError`` unless the invariants hold (used by tests and before export)."""
        n = len(self.timestamps)
        cols = (self.close, self.lower, self.upper, self.lower_95, self.upper_95)
        if any(len(c) != n for c in cols):
            raise ValueError("forecast columns differ in length")
        for i in range(n):
            lo95, lo, mid, hi, hi95 = (
                self.lower_95[i],
                self.lower[i],
                self.close[i],
                self.upper[i],
                self.upper_95[i],
            )
            vals = (lo95, lo, mid, hi, hi95)
            if not all(math.isfinite(v) and v > 0 for v in vals):
                raise ValueError(f"forecast step {i + 1} has a non-finite or non-positive value")
            if not lo95 <= lo <= mid <= hi <= hi95:
                raise ValueError(f"forecast step {i + 1} bands are out of order: {vals}")
        return self

    def rows(self) -> list[dict[str, Any]]:
        """``predictions`` entries of a prediction file (ISO timestamps)."""
        return [
            {
                "timestamp": iso(t),
                "close": c,
                "lower": lo,
                "upper": hi,
                "lower_95": lo95,
                "upper_95": hi95,
            }
            for t, c, lo, hi, lo95, hi95 in zip(
                self.timestamps,
                self.close,
                self.lower,
                self.upper,
                self.lower_95,
                self.upper_95,
                strict=True,
            )
        ]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = {"name": self.model_name, "version": self.model_version}
        return d
