import calendar
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coinpredict.base.errors import ConfigError
from coinpredict.base.timeframes import (
    DAY_MS,
    TIMEFRAMES,
    iso,
    parse_duration,
    parse_instant,
    parse_timeframe,
)

TS = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100
TF = st.sampled_from(list(TIMEFRAMES.values()))


@given(TF, TS)
def test_floor_is_aligned_and_not_after(tf, ts):
    f = tf.floor(ts)
    assert f <= ts < tf.add(f, 1)
    assert tf.is_aligned(f)
    assert tf.floor(f) == f


@given(TF, TS, st.integers(min_value=-50, max_value=50))
def test_add_round_trips(tf, ts, n):
    f = tf.floor(ts)
    assert tf.add(tf.add(f, n), -n) == f


@given(TF, TS, TS)
def test_floor_is_monotonic(tf, a, b):
    lo, hi = min(a, b), max(a, b)
    assert tf.floor(lo) <= tf.floor(hi)


@given(TF, TS, st.integers(min_value=0, max_value=300))
def test_count_matches_grid(tf, start, span):
    end = tf.add(tf.floor(start), span) + 1
    grid = list(tf.grid(start, end))
    assert len(grid) == tf.count(start, end)
    assert all(tf.add(a, 1) == b for a, b in zip(grid, grid[1:], strict=False))
    assert all(start <= t <= end for t in grid)


@given(TF, TS)
def test_last_closed_is_closed_and_next_is_not(tf, now):
    last = tf.last_closed_open(now)
    assert tf.is_closed(last, now)
    assert not tf.is_closed(tf.add(last, 1), now)


@given(TS)
def test_weeks_open_on_monday_midnight(ts):
    d = datetime.fromtimestamp(TIMEFRAMES["1w"].floor(ts) / 1000, UTC)
    assert (d.weekday(), d.hour, d.minute, d.second) == (0, 0, 0, 0)


@given(TS)
def test_months_are_calendar_months(ts):
    tf = TIMEFRAMES["1M"]
    start = tf.floor(ts)
    d = datetime.fromtimestamp(start / 1000, UTC)
    assert (d.day, d.hour, d.minute) == (1, 0, 0)
    length_days = (tf.add(start, 1) - start) // DAY_MS
    assert length_days == calendar.monthrange(d.year, d.month)[1]


def test_leap_february_and_binance_first_candle():
    tf = TIMEFRAMES["1M"]
    feb_2020 = parse_instant("2020-02-01", setting="t")
    assert (tf.add(feb_2020, 1) - feb_2020) // DAY_MS == 29
    feb_2100 = parse_instant("2100-02-01", setting="t")
    assert (tf.add(feb_2100, 1) - feb_2100) // DAY_MS == 28
    # the first Binance BTC/USDT hourly candle
    assert iso(TIMEFRAMES["1h"].floor(1502942400000 + 1234)) == "2017-08-17T04:00:00Z"
    # 2017-08-14 was a Monday: the first weekly candle of BTC_USDT-1w.csv
    assert TIMEFRAMES["1w"].floor(
        parse_instant("2017-08-17T12:00:00Z", setting="t")
    ) == parse_instant("2017-08-14", setting="t")


def test_mid_candle_and_boundary_now():
    tf = TIMEFRAMES["1h"]
    boundary = parse_instant("2024-01-01T10:00:00Z", setting="t")
    assert tf.last_closed_open(boundary) == boundary - 3_600_000
    assert tf.last_closed_open(boundary + 1) == boundary - 3_600_000
    assert tf.last_closed_open(boundary - 1) == boundary - 2 * 3_600_000


def test_parsers_name_the_setting():
    with pytest.raises(ConfigError, match=r"^COINPREDICT_TIMEFRAMES: unknown timeframe '5m'"):
        parse_timeframe("5m", setting="COINPREDICT_TIMEFRAMES")
    with pytest.raises(ConfigError, match=r"^grace: duration must be positive, got '-5m'$"):
        parse_duration("-5m", setting="grace")
    with pytest.raises(ConfigError, match=r"^--since: 'yesterday' is not a date"):
        parse_instant("yesterday", setting="--since")
    assert parse_duration("6h", setting="x") == 6 * 3_600_000
    assert parse_instant("2020-01-01T00:00:00+02:00", setting="x") == parse_instant(
        "2019-12-31T22:00:00Z", setting="x"
    )
