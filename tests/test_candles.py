"""Candle validation: every reason, the still-open candle, duplicates, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coinpredict.base.candles import (
    REASONS,
    Candle,
    Rejection,
    check_row,
    validate_page,
    validate_rows,
)
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


# --- whole pages: the one-pass check of a clean Binance page agrees with the row-by-row one ----

MUTATIONS = (
    lambda r: r.__setitem__(1, " " + r[1]),  # text float() takes but a writer must not copy
    lambda r: r.__setitem__(4, r[4] + "e0"),
    lambda r: r.__setitem__(2, "+" + r[2]),
    lambda r: r.__setitem__(5, "1_0"),
    lambda r: r.__setitem__(3, "NaN"),
    lambda r: r.__setitem__(3, "9" * 400),  # a plain decimal that is not finite
    lambda r: r.__setitem__(1, float(r[1])),  # a number, not text
    lambda r: r.__setitem__(2, "0.5"),  # high below the body
    lambda r: r.__setitem__(5, "-1"),
    lambda r: r.__setitem__(0, r[0] + 1),  # off the grid
    lambda r: r.__setitem__(0, str(r[0])),
    lambda r: r.__setitem__(1, ".5"),
    lambda r: r.__setitem__(4, "7."),
    lambda r: r.__setitem__(1, "\u0661"),
    lambda r: r.pop(),
)


@st.composite
def binance_pages(draw):
    """Pages as Binance sends them (ascending open times, prices as decimal text, the extra
    kline fields), some with one row spoiled, moved or repeated."""
    n = draw(st.integers(min_value=0, max_value=12))
    steps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=n, max_size=n))
    page, ts = [], T0 - 2 * HOUR_MS
    for step in steps:
        ts += step * HOUR_MS
        o, c = draw(prices), draw(prices)
        digits = draw(st.integers(min_value=0, max_value=8))
        text = [f"{x:.{digits}f}" for x in (o, max(o, c) * 1.01, min(o, c) * 0.99, c)]
        if float(text[2]) <= 0:
            text[2] = text[0] = text[3] = "1"
            text[1] = "2"
        page.append([ts, *text, f"{draw(prices):.8f}", ts + HOUR_MS - 1, "0.0", 7, "0", "0", "0"])
    if page and draw(st.booleans()):
        i = draw(st.integers(min_value=0, max_value=len(page) - 1))
        how = draw(st.integers(min_value=0, max_value=len(MUTATIONS) + 2))
        if how < len(MUTATIONS):
            MUTATIONS[how](page[i])
        elif how == len(MUTATIONS):
            page.append(list(page[i]))  # a repeated open time
        else:
            page.reverse()
    return page


@settings(max_examples=400, deadline=None)
@given(binance_pages(), st.integers(min_value=-2, max_value=12))
def test_the_page_check_agrees_with_the_row_check(page, last_hour):
    last = T0 + last_hour * HOUR_MS
    start = T0 - HOUR_MS
    checked = validate_page(page, H1, last, start_ms=start, end_ms=last + 5 * HOUR_MS)
    candles, rejected = validate_rows(page, H1, last, start_ms=start, end_ms=last + 5 * HOUR_MS)
    assert checked.candles == candles
    assert [(r.ts, r.reason, r.raw) for r in checked.rejected] == [
        (r.ts, r.reason, r.raw) for r in rejected
    ]
    if checked.texts is not None:  # text to write as it came: plain decimals, the same floats
        assert len(checked.texts) == len(candles)
        for c, texts in zip(candles, checked.texts, strict=True):
            assert [float(t) for t in texts] == [c.open, c.high, c.low, c.close, c.volume]
            assert all(t.isascii() and t.replace(".", "", 1).isdigit() for t in texts)


def test_a_clean_page_keeps_its_text_and_drops_the_open_candle():
    page = [
        [T0 + k * HOUR_MS, "100.50", "110", "90.25000000", "105.0", "3.5", 0, "0", 1, "0", "0", "0"]
        for k in range(12)
    ]
    checked = validate_page(page, H1, LAST)  # T0 + 11 h is the still-open candle
    assert len(checked.candles) == 11 and not checked.rejected
    assert checked.texts == [["100.50", "110", "90.25000000", "105.0", "3.5"]] * 11
    assert checked.candles[0] == Candle(T0, 100.5, 110.0, 90.25, 105.0, 3.5)
    spoiled = [list(r) for r in page]
    spoiled[3][1] = "1e2"  # float() takes it; it is not a plain decimal: no text for the page
    assert validate_page(spoiled, H1, LAST).texts is None
    assert validate_page(spoiled, H1, LAST).candles[3].open == 100.0


@pytest.mark.parametrize("how", range(len(MUTATIONS)))
def test_every_spoiled_row_anywhere_in_a_clean_page_is_found(how):
    clean = [
        [T0 + k * HOUR_MS, "100.5", "110", "90.25", "105.0", "3.5", 0, "0", 1, "0", "0", "0"]
        for k in range(11)
    ]
    for i in range(len(clean)):
        page = [list(r) for r in clean]
        MUTATIONS[how](page[i])
        checked = validate_page(page, H1, LAST)
        candles, rejected = validate_rows(page, H1, LAST)
        assert (checked.candles, checked.rejected) == (candles, rejected), (how, i)
        assert checked.texts is None or all(
            t.isascii() and t.replace(".", "", 1).isdigit() for ts in checked.texts for t in ts
        )
