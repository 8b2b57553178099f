"""The model-window cache (coinpredict.serving.windows) against a real influxd: whatever happens to the
stored candles, a window read through the cache equals a plain read of InfluxDB."""

import numpy as np
import pytest
from helpers.samples import rows
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.serving.windows import (
    MAGIC,
    _load,
    decode,
    encode,
    old_window_path,
    read_window,
    window_path,
)
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000
H1 = TIMEFRAMES["1h"]
BTC = rows("BTC_USDT-1h.csv")[-600:]
SERIES = Series("binance", "BTC/USDT", H1)
NOW = BTC[-1][0] + 2 * H


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


def _window(store, settings, end, n=200, now=NOW):
    return read_window(store, SERIES, end - (n - 1) * H, end, settings.state_dir, now)


def _plain(store, end, n=200):
    return store.read(SERIES, end - (n - 1) * H, end)


def _full_read_at(settings):
    return _load(window_path(settings.state_dir, SERIES))[1]


def test_second_read_reuses_the_cache_and_reads_only_new_candles(settings, store):
    store.write(SERIES, BTC[:-10])
    end = BTC[-11][0]
    first = _window(store, settings, end, now=NOW - DAY_MS // 4)
    assert first.equals(_plain(store, end)) and first.height == 200
    store.write(SERIES, BTC[-10:])  # ten new candles
    second = _window(store, settings, BTC[-1][0])
    assert second.equals(_plain(store, BTC[-1][0]))
    assert _full_read_at(settings) == NOW - DAY_MS // 4  # not read in full again


def test_refilled_or_deleted_candles_force_a_full_read(settings, store):
    missing = BTC[500]  # inside the window (the newest 200 of 600)
    store.write(SERIES, BTC[:500] + BTC[501:])
    end = BTC[-1][0]
    assert _window(store, settings, end, now=NOW - H).height == 199  # the hole is in the window
    store.write(SERIES, [missing])  # detect-gaps --refill found it
    got = _window(store, settings, end)
    assert got.equals(_plain(store, end)) and got.height == 200
    assert _full_read_at(settings) == NOW
    store.delete(SERIES, BTC[450][0], BTC[450][0])  # an operator deleted one candle
    got = _window(store, settings, end, now=NOW + H)
    assert got.equals(_plain(store, end)) and got.height == 199
    assert _full_read_at(settings) == NOW + H


def test_an_old_cache_is_read_in_full_again(settings, store):
    store.write(SERIES, BTC)
    end = BTC[-1][0]
    _window(store, settings, end, now=NOW)
    _window(store, settings, end, now=NOW + DAY_MS)  # older than any series' limit
    assert _full_read_at(settings) == NOW + DAY_MS


GOOD = encode(np.arange(12.0).reshape(2, 6), 5)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a window file",
        b"PK\x03\x04 torn zip",
        GOOD[:-1],  # torn: the last value cut short
        GOOD[:-48],  # torn: a whole row missing
        GOOD + b"\0" * 8,  # padded
        GOOD[:8] + GOOD[8:16] + GOOD[16:24] + (5).to_bytes(8, "little") + GOOD[32:],  # 5 columns
        b"CPWIN2\0\0" + GOOD[8:],  # another format
    ],
)
def test_a_torn_or_foreign_file_means_a_full_read(settings, store, content):
    store.write(SERIES, BTC)
    path = window_path(settings.state_dir, SERIES)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    end = BTC[-1][0]
    assert _window(store, settings, end).equals(_plain(store, end))
    assert _full_read_at(settings) == NOW  # and the file is good again


def test_an_unwritable_cache_dir_does_not_stop_the_read(settings, store, tmp_path):
    store.write(SERIES, BTC)
    (settings.state_dir / "windows").parent.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "windows").write_text("a file where the directory should be")
    end = BTC[-1][0]
    assert _window(store, settings, end).equals(_plain(store, end))


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 30)),
        st.tuples(st.just("delete"), st.integers(0, 599)),
        st.tuples(st.just("refill"), st.integers(0, 599)),
        st.tuples(st.just("window"), st.integers(20, 260)),
    ),
    min_size=1,
    max_size=8,
)


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_property_cached_window_always_equals_influxdb(settings, store, ops):
    store.delete(SERIES)
    window_path(settings.state_dir, SERIES).unlink(missing_ok=True)
    stored = 300
    store.write(SERIES, BTC[:stored])
    n = 200
    for op, k in ops:
        if op == "append":
            store.write(SERIES, BTC[stored : stored + k])
            stored = min(len(BTC), stored + k)
        elif op == "delete":
            store.delete(SERIES, BTC[k][0], BTC[k][0])
        elif op == "refill":
            store.write(SERIES, [BTC[k]])
        else:
            n = k
        end = BTC[stored - 1][0]
        assert _window(store, settings, end, n).equals(_plain(store, end, n)), (op, k)


def test_the_file_format_round_trips_exactly():
    candles = np.array([[1.5e12, 0.1, 0.30000000000000004, 1e-300, 7.0, 123456789.123]] * 3)
    got = decode(encode(candles, 42))
    assert got is not None and got[1] == 42 and got[0].tobytes() == candles.tobytes()
    assert GOOD[:8] == MAGIC and decode(GOOD) is not None
    assert decode(GOOD[:-1]) is None and decode(GOOD + b"x") is None and decode(b"") is None


def test_an_old_npz_window_is_read_in_full_once_and_removed(settings, store):
    store.write(SERIES, BTC)
    old = old_window_path(settings.state_dir, SERIES)
    old.parent.mkdir(parents=True)
    old.write_bytes(b"PK\x03\x04 an npz of an earlier version")
    end = BTC[-1][0]
    assert _window(store, settings, end).equals(_plain(store, end))
    assert not old.exists() and window_path(settings.state_dir, SERIES).exists()
    assert _full_read_at(settings) == NOW


def test_newest_rows_refuses_a_window_too_short_or_with_a_value_missing():
    """Export then reads InfluxDB itself (which reports the missing field)."""
    from coinpredict.serving.windows import newest_rows
    from coinpredict.store.candles import frame_of

    good = [(i * 60_000, 1.0 + i, 2.0 + i, 0.5, 1.5, 10.0) for i in range(5)]
    assert newest_rows(frame_of(good), 3) == good[-3:]
    assert newest_rows(frame_of(good), 6) is None and newest_rows(frame_of(good), 0) is None
    for bad in (float("nan"), float("inf")):
        rows_ = [*good[:4], (4 * 60_000, 1.0, 2.0, 0.5, bad, 10.0)]
        assert newest_rows(frame_of(rows_), 3) is None
        assert newest_rows(frame_of(rows_[:4]), 3) == good[1:4]
