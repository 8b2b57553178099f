"""Candle time: the UTC grid of each timeframe, in integer milliseconds.

``1m``, ``1h`` and ``1d`` are fixed steps from the epoch, ``1w`` candles open on Monday 00:00 UTC
(as Binance's do) and ``1M`` candles are calendar months. A candle is *closed* when
``open + timeframe <= now``.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from coinpredict.base.errors import ConfigError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday; the first Monday 00:00 UTC after the epoch is 1970-01-05.
_MONDAY_OFFSET_MS = 4 * DAY_MS


def _month_index(ts_ms: int) -> int:
    d = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return d.year * 12 + (d.month - 1)


def _month_start(index: int) -> int:
    year, month0 = divmod(index, 12)
    return calendar.timegm((year, month0 + 1, 1, 0, 0, 0)) * 1000


@dataclass(frozen=True, slots=True)
class Timeframe:
    """One of ``1m, 1h, 1d, 1w, 1M``. Compare and hash by ``code``."""

    code: str
    step_ms: int  # nominal length; exact for every timeframe but 1M

    @property
    def is_monthly(self) -> bool:
        return self.code == "1M"

    def __str__(self) -> str:
        return self.code

    # --- the grid -----------------------------------------------------------------------
    def floor(self, ts_ms: int) -> int:
        """Open time of the candle that contains ``ts_ms``."""
        if self.is_monthly:
            return _month_start(_month_index(ts_ms))
        if self.code == "1w":
            return (ts_ms - _MONDAY_OFFSET_MS) // WEEK_MS * WEEK_MS + _MONDAY_OFFSET_MS
        return ts_ms // self.step_ms * self.step_ms

    def is_aligned(self, ts_ms: int) -> bool:
        return self.floor(ts_ms) == ts_ms

    def add(self, ts_ms: int, n: int = 1) -> int:
        """Move an aligned open time ``n`` candles forward (or back when ``n`` < 0)."""
        if self.is_monthly:
            return _month_start(_month_index(ts_ms) + n)
        return ts_ms + n * self.step_ms

    def next_boundary(self, ts_ms: int) -> int:
        """The first boundary strictly after ``ts_ms``."""
        return self.add(self.floor(ts_ms), 1)

    def close_time(self, open_ms: int) -> int:
        """Close time of the candle that opens at ``open_ms``."""
        return self.add(open_ms, 1)

    def last_closed_open(self, now_ms: int) -> int:
        """Open time of the newest candle that has closed at ``now_ms``."""
        return self.add(self.floor(now_ms), -1)

    def is_closed(self, open_ms: int, now_ms: int) -> bool:
        return self.close_time(open_ms) <= now_ms

    def count(self, start_ms: int, end_ms: int) -> int:
        """Number of grid points ``t`` with ``start <= t <= end`` (both aligned or not)."""
        first = self.floor(start_ms)
        if first < start_ms:
            first = self.add(first, 1)
        last = self.floor(end_ms)
        if last < first:
            return 0
        if self.is_monthly:
            return _month_index(last) - _month_index(first) + 1
        return (last - first) // self.step_ms + 1

    def grid(self, start_ms: int, end_ms: int) -> Iterator[int]:
        """Every open time ``t`` on the grid with ``start <= t <= end``."""
        t = self.floor(start_ms)
        if t < start_ms:
            t = self.add(t, 1)
        while t <= end_ms:
            yield t
            t = self.add(t, 1)


TIMEFRAMES: dict[str, Timeframe] = {
    tf.code: tf
    for tf in (
        Timeframe("1m", MINUTE_MS),
        Timeframe("1h", HOUR_MS),
        Timeframe("1d", DAY_MS),
        Timeframe("1w", WEEK_MS),
        Timeframe("1M", 31 * DAY_MS),
    )
}
ORDER = tuple(TIMEFRAMES)


def parse_timeframe(code: str, *, setting: str = "timeframe") -> Timeframe:
    try:
        return TIMEFRAMES[code.strip()]
    except KeyError:
        raise ConfigError(
            f"{setting}: unknown timeframe {code!r} (expected one of {', '.join(ORDER)})"
        ) from None


def iso(ts_ms: int) -> str:
    """ISO 8601 UTC with ``Z`` and second precision (milliseconds when not whole)."""
    d = datetime.fromtimestamp(ts_ms / 1000, UTC)
    if ts_ms % 1000:
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str, *, setting: str) -> int:
    """``YYYY-MM-DD`` or an ISO 8601 instant (UTC when no offset is given) -> ms."""
    raw = text.strip()
    try:
        d = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{setting}: {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 instant"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp() * 1000)


_UNITS = {"s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}


def parse_duration(text: str | int | float, *, setting: str) -> int:
    """``90s``, ``5m``, ``6h``, ``3d``, ``2w`` (or a number of seconds) -> positive ms."""
    if isinstance(text, bool):
        raise ConfigError(f"{setting}: {text!r} is not a duration")
    if isinstance(text, int | float):
        ms = int(text * 1000)
    else:
        raw = text.strip()
        unit = raw[-1:]
        number = raw[:-1] if unit in _UNITS else raw
        factor = _UNITS.get(unit, 1000)
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(
                f"{setting}: {text!r} is not a duration (use e.g. 90s, 5m, 6h, 3d, 2w)"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{setting}: {text!r} is not a duration")
        ms = int(value * factor)
    if ms <= 0:
        raise ConfigError(f"{setting}: duration must be positive, got {text!r}")
    return ms
