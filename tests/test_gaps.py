"""Gap detection: grid arithmetic (property-tested) and real Binance outages."""

import numpy as np
import pytest
from helpers.samples import rows
from hypothesis import given
from hypothesis import strategies as st

from coinpredict.base.clock import FixedClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, parse_instant
from coinpredict.ingest import gaps
from coinpredict.ingest.gaps import missing_ranges, run_detect
from coinpredict.local.state import IngestState, save_ingest
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000

# From ../shared/data/PROVENANCE.md: BTC_USDT-1h gaps (first missing candle, count), 2018-01..2019-05
REAL_GAPS = [
    ("2018-01-04T04:00Z", 1),
    ("2018-02-08T01:00Z", 33),
    ("2018-06-26T02:00Z", 10),
    ("2018-06-27T13:00Z", 1),
    ("2018-07-04T01:00Z", 7),
    ("2018-10-19T06:00Z", 3),
    ("2018-11-14T02:00Z", 7),
    ("2019-03-12T02:00Z", 6),
    ("2019-05-15T03:00Z", 10),
]


def _brute(stored, tf, start, end):
    have = set(stored)
    return [t for t in tf.grid(start, end) if t not in have]


@given(
    st.sampled_from(["1m", "1h", "1d", "1w", "1M"]),
    st.lists(st.booleans(), min_size=1, max_size=120),
)
def test_missing_ranges_match_brute_force(code, present):
    tf = TIMEFRAMES[code]
    start = tf.floor(1_600_000_000_000)
    grid = [start]
    for _ in present[1:]:
        grid.append(tf.add(grid[-1], 1))
    stored = np.array([t for t, p in zip(grid, present, strict=True) if p], dtype=np.int64)
    ranges = missing_ranges(stored, tf, grid[0], grid[-1])
    flat = [t for r in ranges for t in tf.grid(r.first, r.last)]
    assert flat == _brute(stored.tolist(), tf, grid[0], grid[-1])
    assert all(r.count == tf.count(r.first, r.last) for r in ranges)


def test_real_outages_are_found_exactly():
    data = rows("BTC_USDT-1h.csv")
    stored = np.array([r[0] for r in data], dtype=np.int64)
    ranges = missing_ranges(stored, TIMEFRAMES["1h"], data[0][0], data[-1][0])
    assert [(r.first, r.count) for r in ranges] == [
        (parse_instant(first, setting="t"), n) for first, n in REAL_GAPS
    ]


def test_detect_from_series_start_includes_deleted_first_and_last(settings, influx_http):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1d"])
    data = rows("BTC_USDT-1d.csv")
    store.write(series, data[1:-1])  # first and last candle missing
    save_ingest(
        settings.state_dir, series, IngestState(cursor=data[-2][0], series_start=data[0][0])
    )
    clock = FixedClock(data[-1][0] + 24 * H + 60_000)  # the last candle has just closed
    report, found = run_detect([series], settings, store, clock)
    assert report.exit_code == 0
    assert [(r.first, r.last, r.count) for r in found[0].missing] == [
        (data[0][0], data[0][0], 1),
        (data[-1][0], data[-1][0], 1),
    ]


DAY = 86_400_000


def _plant_1m(data):
    """1m: first candle, 23:50-00:09 across a midnight, one minute at noon, the last 7."""
    t0 = data[0][0]
    midnight = (t0 // DAY + 1) * DAY
    drop = {t0, midnight + 12 * H} | set(
        range(midnight - 10 * 60_000, midnight + 10 * 60_000, 60_000)
    )
    drop |= {r[0] for r in data[-7:]}
    return drop


def _plant_1h(data):
    """1h (real outages, some across midnight, kept): first candle, 22:00-02:00 across a
    midnight, the last 5."""
    t0 = data[0][0]
    midnight = (t0 // DAY + 40) * DAY
    drop = {t0} | set(range(midnight - 2 * H, midnight + 3 * H, H))
    drop |= {r[0] for r in data[-5:]}
    return drop


@pytest.mark.parametrize(
    ("code", "name", "plant"),
    [("1m", "BTC_USDT-1m.csv", _plant_1m), ("1h", "BTC_USDT-1h.csv", _plant_1h)],
)
def test_day_counted_scan_equals_full_scan(settings, influx_http, monkeypatch, code, name, plant):
    """The cheap scan (count per day, read only incomplete days) finds exactly what reading every
    open time finds, on real candles with planted gaps; and it reads only the incomplete days."""
    init_storage(settings, influx_http)
    # 1m candles of 2021 in the database kept forever (the 1m one keeps 180 days of real time)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db)
    tf = TIMEFRAMES[code]
    series = Series("binance", "BTC/USDT", tf)
    data = rows(name)
    drop = plant(data)
    kept = [r for r in data if r[0] not in drop]
    store.write(series, kept)
    save_ingest(
        settings.state_dir, series, IngestState(cursor=kept[-1][0], series_start=data[0][0])
    )
    end = data[-1][0]
    clock = FixedClock(end + tf.step_ms + 1000)  # the last (deleted) candle has just closed
    read: list[tuple[int, int]] = []
    real_timestamps_in = gaps.timestamps_in

    def spy(store_, series_, ranges):
        read.extend(ranges)
        return real_timestamps_in(store_, series_, ranges)

    monkeypatch.setattr(gaps, "timestamps_in", spy)
    report, found = run_detect([series], settings, store, clock)
    assert report.exit_code == 0
    read_by_detect = list(read)
    cheap = [(r.first, r.last, r.count) for r in found[0].missing]
    full = missing_ranges(store.timestamps(series, data[0][0], end), tf, data[0][0], end)
    assert cheap == [(r.first, r.last, r.count) for r in full]
    flat = [t for r in found[0].missing for t in tf.grid(r.first, r.last)]
    assert flat == _brute([r[0] for r in kept], tf, data[0][0], end)
    assert data[0][0] in flat and end in flat  # first and last candle found missing
    assert np.array_equal(
        gaps.stored_open_times(series, store, data[0][0], end),
        store.timestamps(series, data[0][0], end),
    )
    # only days holding a gap were read candle by candle
    gap_days = {t // DAY for t in flat}
    assert read_by_detect and {lo // DAY for lo, _ in read_by_detect} <= gap_days
    assert sum(hi - lo for lo, hi in read_by_detect) <= len(gap_days) * DAY
