"""Candle validation: raw exchange rows -> valid :class:`Candle` values and :class:`Rejection` s.

Pure functions, no I/O. The exchange adapter runs every page it fetches through
:func:`validate_rows`; nothing that fails here is ever written to the store.

A row is ``[open_time_ms, open, high, low, close, volume, ...]`` (ccxt's OHLCV row, or Binance's
kline row with prices as strings). Checks, in order, each with a short fixed reason:

* the row is a list/tuple of at least 6 items                      -> ``malformed row``
* the open time is an integer (an integral float is accepted)        -> ``bad timestamp``
* the open time is on the timeframe grid (``Timeframe.is_aligned``)  -> ``off-grid timestamp``
* the candle has closed at the caller's "now" (``ts <= last_closed``); the still-open candle
  (``ts == next open after last_closed``) is dropped silently, it is normal; anything later is
  ``in the future``
* optional requested range ``[start_ms, end_ms]``                     -> ``outside requested range``
* every value is present and numeric                                -> ``missing value`` /
  ``non-numeric value``
* every value is finite                                             -> ``non-finite value``
* prices are > 0                                                    -> ``non-positive price``
* ``low <= high``                                                   -> ``high < low``
* ``low <= min(open, close)``                                       -> ``low > open/close``
* ``max(open, close) <= high``                                      -> ``high < open/close``
* ``volume >= 0``                                                   -> ``negative volume``
* one row per open time within the page; every row of a repeated open time is refused (the page
  cannot say which one is right)                                    -> ``duplicate timestamp``
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import isfinite
from typing import Any, NamedTuple

from coinpredict.base.timeframes import Timeframe

# text that float() accepted and that holds nothing but ASCII digits and dots is a plain decimal
# (digits with at most one dot), as Binance sends prices: it is exactly the float it parses to, in
# any reader, and can be written as it came
_DIGITS_AND_DOTS = re.compile(r"[0-9.\x00]*")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
    re.IGNORECASE | re.ASCII,
)

MALFORMED_ROW = "malformed row"
BAD_TIMESTAMP = "bad timestamp"
OFF_GRID = "off-grid timestamp"
IN_THE_FUTURE = "in the future"
OUT_OF_RANGE = "outside requested range"
MISSING_VALUE = "missing value"
NON_NUMERIC = "non-numeric value"
NON_FINITE = "non-finite value"
NON_POSITIVE_PRICE = "non-positive price"
HIGH_BELOW_LOW = "high < low"
LOW_ABOVE_BODY = "low > open/close"
HIGH_BELOW_BODY = "high < open/close"
NEGATIVE_VOLUME = "negative volume"
DUPLICATE = "duplicate timestamp"

REASONS = (
    MALFORMED_ROW,
    BAD_TIMESTAMP,
    OFF_GRID,
    IN_THE_FUTURE,
    OUT_OF_RANGE,
    MISSING_VALUE,
    NON_NUMERIC,
    NON_FINITE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_LOW,
    LOW_ABOVE_BODY,
    HIGH_BELOW_BODY,
    NEGATIVE_VOLUME,
    DUPLICATE,
)


class Candle(NamedTuple):
    """One closed candle. ``ts`` is the open time in ms UTC; values are float64. It is also the
    row ``(ts, open, high, low, close, volume)`` that the store writes."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that was refused, with the reason (one of :data:`REASONS`) and the row as received."""

    ts: int | None
    reason: str
    raw: list


def _timestamp(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
    return None


def _number(value: Any) -> float | str:
    """The value as a float, or the reason it is not one."""
    if type(value) is str and value.isascii() and "_" not in value:
        # the common case (Binance sends prices as text): for ASCII without digit separators
        # float() accepts exactly what _NUMBER does, so one float() call decides
        try:
            return float(value)
        except ValueError:
            return NON_NUMERIC if value.strip() else MISSING_VALUE
    if value is None:
        return MISSING_VALUE
    if isinstance(value, bool):
        return NON_NUMERIC
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return MISSING_VALUE
        if not _NUMBER.fullmatch(text):  # ASCII only: float() would also take other digits
            return NON_NUMERIC
        return float(text)
    return NON_NUMERIC


def check_row(
    row: Any,
    tf: Timeframe,
    last_closed_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Candle | Rejection | None:
    """Validate one row. ``None`` means "the still-open candle": drop it silently."""
    if not isinstance(row, list | tuple) or len(row) < 6:
        raw = list(row) if isinstance(row, list | tuple) else [row]
        return Rejection(None, MALFORMED_ROW, raw)
    ts = _timestamp(row[0])
    reason = _time_problem(ts, tf, last_closed_ms, start_ms, end_ms)
    if reason is not None:
        return None if reason == _STILL_OPEN else Rejection(ts, reason, list(row))
    assert ts is not None
    checked = _values(row)
    if isinstance(checked, str):
        return Rejection(ts, checked, list(row))
    o, h, lo, c, v = checked
    return Candle(ts, o, h, lo, c, v)


_STILL_OPEN = "still open"


def _time_problem(
    ts: int | None, tf: Timeframe, last_closed: int, start_ms: int | None, end_ms: int | None
) -> str | None:
    """Why an open time is refused (``_STILL_OPEN``: the open candle), None when it is fine."""
    if ts is None:
        return BAD_TIMESTAMP
    if not tf.is_aligned(ts):
        return OFF_GRID
    if ts > last_closed:
        return _STILL_OPEN if ts == tf.add(tf.floor(last_closed), 1) else IN_THE_FUTURE
    if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts > end_ms):
        return OUT_OF_RANGE
    return None


def _values(row: Sequence[Any]) -> tuple[float, float, float, float, float] | str:
    """(open, high, low, close, volume) as floats, or the reason they are refused."""
    values: list[float] = []
    for item in row[1:6]:
        number = _number(item)
        if isinstance(number, str):
            return number
        values.append(number)
    o, h, lo, c, v = values
    if not (isfinite(o) and isfinite(h) and isfinite(lo) and isfinite(c) and isfinite(v)):
        return NON_FINITE
    if min(o, h, lo, c) <= 0:
        return NON_POSITIVE_PRICE
    if h < lo:
        return HIGH_BELOW_LOW
    if lo > min(o, c):
        return LOW_ABOVE_BODY
    if max(o, c) > h:
        return HIGH_BELOW_BODY
    if v < 0:
        return NEGATIVE_VOLUME
    return o, h, lo, c, v


@dataclass(frozen=True, slots=True)
class CheckedPage:
    """A page split by :func:`validate_page`. ``texts``, when not None, holds for each candle its
    five values (open, high, low, close, volume) as the plain decimal text they came as (see
    ``_DIGITS_AND_DOTS``): a writer may store them as they are instead of formatting the
    floats."""

    candles: list[Candle]
    rejected: list[Rejection]
    texts: list[list[str]] | None = None


def validate_page(
    rows: Sequence[Any],
    tf: Timeframe,
    last_closed_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> CheckedPage:
    """:func:`validate_rows`, and the values' text when the page is a clean Binance page.

    The common page (ascending open times on the grid, every value plain decimal text, every
    candle valid) takes one pass with no per-candle object but the candle; any other page is
    checked row by row by :func:`check_row`, with the same result as always."""
    fast = _clean_page(rows, tf, last_closed_ms, start_ms, end_ms)
    if fast is not None:
        return fast
    return CheckedPage(*validate_rows(rows, tf, last_closed_ms, start_ms=start_ms, end_ms=end_ms))


def _clean_page(
    rows: Sequence[Any],
    tf: Timeframe,
    last_closed: int,
    start_ms: int | None,
    end_ms: int | None,
) -> CheckedPage | None:
    """The page when every row passes every check of :func:`check_row` in the plainest form
    (None otherwise: the caller checks row by row). Only the last row may be the still-open
    candle, which is dropped."""
    low_ts = -1 if start_ms is None else start_ms
    high_ts = last_closed if end_ms is None else min(end_ms, last_closed)
    step = 0 if tf.code in ("1w", "1M") else tf.step_ms
    candles: list[Candle] = []
    texts: list[list[str]] = []
    new = tuple.__new__
    prev = low_ts - 1
    for row in rows:
        if type(row) is not list or len(row) < 6:
            return None
        ts = row[0]
        if type(ts) is not int or ts <= prev or ts > high_ts or ts < low_ts:
            if type(ts) is int and ts > prev and row is rows[-1] and ts > last_closed:
                if ts == tf.add(tf.floor(last_closed), 1):
                    break  # the still-open candle, dropped
            return None
        if (ts % step if step else tf.floor(ts) - ts) != 0:
            return None
        values = row[1:6]
        try:
            o, h, lo, c, v = map(float, values)
        except (TypeError, ValueError):
            return None
        if not (0 < lo <= o <= h and lo <= c <= h and v >= 0) or h == _INF or v == _INF:
            return None
        candles.append(new(Candle, (ts, o, h, lo, c, v)))
        texts.append(values)
        prev = ts
    try:  # one look at every value of the page: all text, all plain decimals
        blob = "\x00".join(itertools.chain.from_iterable(texts))
    except TypeError:  # numbers, not text (float() took them): not Binance's page
        return None
    if _DIGITS_AND_DOTS.fullmatch(blob) is None:
        return None
    return CheckedPage(candles, [], texts)


_INF = float("inf")


def validate_rows(
    rows: Iterable[Sequence[Any]],
    tf: Timeframe,
    last_closed_ms: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[list[Candle], list[Rejection]]:
    """Split one page of raw rows into valid candles (ascending by time) and rejections.

    ``last_closed_ms`` is the open time of the newest candle that has closed (see
    :meth:`Timeframe.last_closed_open`); the candle after it is the still-open one and is dropped
    without a rejection. ``start_ms``/``end_ms`` optionally bound the open times the caller asked
    for (inclusive).
    """
    accepted: list[tuple[Candle, Any]] = []
    rejected: list[Rejection] = []
    for row in rows:
        result = check_row(row, tf, last_closed_ms, start_ms=start_ms, end_ms=end_ms)
        if result is None:
            continue
        if isinstance(result, Rejection):
            rejected.append(result)
        else:
            accepted.append((result, row))
    counts = Counter(c.ts for c, _ in accepted)
    candles: list[Candle] = []
    for c, row in accepted:
        if counts[c.ts] > 1:
            rejected.append(Rejection(c.ts, DUPLICATE, list(row)))
        else:
            candles.append(c)
    candles.sort(key=lambda c: c.ts)
    return candles, rejected
