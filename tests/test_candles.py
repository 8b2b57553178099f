"""Candle validation: every reason, the still-open candle, duplicates, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coinpredict.base.candles import REASONS, Candle, Rejection, check_row, validate_rows
from coinpredict.base.timeframes import HOUR_MS, TIMEFRAMES

H1 = TIMEFRAMES["1h"]
T0 = 1_600_000_000_000 // HOUR_MS * HOUR_MS
LAST = T0 + 10 * HOUR_MS  # last closed open time; T0 + 11 h is the still-open candle
GOOD = [T0, 100.0, 110.0, 90.0, 105.0, 3.5]


def row(**changes):
    names = ["ts", "open", "high", "low", "close", "volume"]
    out = list(GOOD)
    for k, v in changes.items():
        out[names.index(k)] = v
    return out


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (row(open=float("nan")), "non-finite value"),
        (row(volume=float("inf")), "non-finite value"),
        (row(open="NaN"), "non-finite value"),
        (row(high=80.0), "high < low"),
        (row(low=101.0), "low > open/close"),
        (row(high=104.0), "high < open/close"),
        (row(volume=-0.5), "negative volume"),
        (row(open=0.0, low=0.0), "non-positive price"),
        (row(low=-1.0), "non-positive price"),
        (row(ts=T0 + 1), "off-grid timestamp"),
        (row(ts=LAST + 2 * HOUR_MS), "in the future"),
        (row(ts="x"), "bad timestamp"),
        (row(ts=None), "bad timestamp"),
        (row(ts=True), "bad timestamp"),
        (row(ts="\u00b9"), "bad timestamp"),  # a superscript digit is not a digit here
        (row(close=None), "missing value"),
        (row(close="abc"), "non-numeric value"),
        (row(close="\u0661"), "non-numeric value"),  # an Arabic-Indic digit
        ([T0, 1.0, 2.0], "malformed row"),
        ("junk", "malformed row"),
    ],
)
def test_each_rejection_reason(raw, reason):
    result = check_row(raw, H1, LAST)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert reason in REASONS


def test_valid_rows_become_float_candles():
    candles, rejected = validate_rows([["1600002000000", "1.5", "2", "1", "1.25", "0"]], H1, LAST)
    assert rejected == []
    assert candles == [Candle(1_600_002_000_000, 1.5, 2.0, 1.0, 1.25, 0.0)]


def test_still_open_candle_is_dropped_silently_but_later_ones_are_rejected():
    open_candle = row(ts=LAST + HOUR_MS)
    later = row(ts=LAST + 2 * HOUR_MS)
    candles, rejected = validate_rows([GOOD, open_candle, later], H1, LAST)
    assert [c.ts for c in candles] == [T0]
    assert [(r.ts, r.reason) for r in rejected] == [(LAST + 2 * HOUR_MS, "in the future")]


def test_duplicates_are_all_refused_and_output_is_sorted():
    a = row(ts=T0 + HOUR_MS)
    b = row(ts=T0 + HOUR_MS, close=104.0)
    candles, rejected = validate_rows([row(ts=T0 + 2 * HOUR_MS), a, GOOD, b], H1, LAST)
    assert [c.ts for c in candles] == [T0, T0 + 2 * HOUR_MS]
    assert [(r.ts, r.reason) for r in rejected] == [
        (T0 + HOUR_MS, "duplicate timestamp"),
        (T0 + HOUR_MS, "duplicate timestamp"),
    ]
    assert rejected[1].raw == b


def test_requested_range():
    candles, rejected = validate_rows([GOOD], H1, LAST, start_ms=T0 + HOUR_MS, end_ms=LAST)
    assert candles == []
    assert rejected[0].reason == "outside requested range"


def test_weekly_and_monthly_grid():
    w1, m1 = TIMEFRAMES["1w"], TIMEFRAMES["1M"]
    monday = 1_663_545_600_000  # 2022-09-19T00:00Z
    sunday = monday - 86_400_000
    now = monday + 8 * 86_400_000
    assert isinstance(check_row([monday, 1, 1, 1, 1, 1], w1, w1.last_closed_open(now)), Candle)
    assert check_row([sunday, 1, 1, 1, 1, 1], w1, w1.last_closed_open(now)).reason == (
        "off-grid timestamp"
    )
    sep1 = 1_661_990_400_000  # 2022-09-01
    last = m1.last_closed_open(sep1 + 40 * 86_400_000)  # 2022-10-11 -> September closed
    assert isinstance(check_row([sep1, 1, 1, 1, 1, 1], m1, last), Candle)
    assert check_row([sep1 + 86_400_000, 1, 1, 1, 1, 1], m1, last).reason == "off-grid timestamp"
    # the open month is dropped silently, the month after it is in the future
    oct1 = m1.add(sep1, 1)
    assert check_row([oct1, 1, 1, 1, 1, 1], m1, last) is None
    assert check_row([m1.add(sep1, 2), 1, 1, 1, 1, 1], m1, last).reason == "in the future"


# --- properties -----------------------------------------------------------------------------
prices = st.floats(min_value=1e-8, max_value=1e7, allow_nan=False, allow_infinity=False)


@st.composite
def valid_rows(draw):
    o, c = draw(prices), draw(prices)
    lo = draw(st.floats(min_value=1e-9, max_value=min(o, c)))
    hi = draw(st.floats(min_value=max(o, c), max_value=2e7))
    v = draw(st.floats(min_value=0, max_value=1e12))
    k = draw(st.integers(min_value=0, max_value=10))
    return [T0 + k * HOUR_MS, o, hi, lo, c, v]


@settings(deadline=None)
@given(valid_rows())
def test_valid_candles_pass_unchanged(raw):
    result = check_row(raw, H1, LAST)
    assert isinstance(result, Candle)
    assert (result.ts, result.open, result.high, result.low, result.close, result.volume) == tuple(
        raw
    )
    # and from strings (Binance sends prices as strings): the same float64
    as_text = [raw[0]] + [repr(x) for x in raw[1:]]
    assert check_row(as_text, H1, LAST) == result


@settings(deadline=None)
@given(valid_rows(), st.floats(min_value=1e-6, max_value=1e6))
def test_breaking_an_invariant_is_caught(raw, delta):
    o, h, lo, c = raw[1:5]
    broken = list(raw)
    broken[2] = min(o, c) - delta  # high below the body (and maybe below low)
    result = check_row(broken, H1, LAST)
    assert isinstance(result, Rejection)
    assert result.reason in ("high < low", "high < open/close", "non-positive price")
    broken = list(raw)
    broken[5] = -delta
    assert check_row(broken, H1, LAST).reason == "negative volume"


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(valid_rows(), st.lists(junk, max_size=8), junk), max_size=20))
def test_never_raises_and_partitions(rows):
    candles, rejected = validate_rows(rows, H1, LAST)
    open_candles = sum(1 for r in rows if check_row(r, H1, LAST) is None)
    assert len(candles) + len(rejected) + open_candles == len(rows)
    ts = [c.ts for c in candles]
    assert ts == sorted(set(ts))
    for c in candles:
        assert H1.is_aligned(c.ts) and c.ts <= LAST
        assert all(math.isfinite(x) for x in (c.open, c.high, c.low, c.close, c.volume))
        assert 0 < c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.volume >= 0
    assert all(r.reason in REASONS for r in rejected)
