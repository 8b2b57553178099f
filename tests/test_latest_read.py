"""store.latest.read_candles with ``since`` (export's history read) against a real influxd: the
same candles as the descending read, whatever gaps, late or extra candles there are."""

import pytest
from helpers.samples import rows

from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.store.candles import CandleStore
from coinpredict.store.latest import read_candles
from coinpredict.store.setup import init_storage

H1, D1 = TIMEFRAMES["1h"], TIMEFRAMES["1d"]
BTC_H = rows("BTC_USDT-1h.csv")[-300:]
ETH_H = rows("ETH_USDT-1h.csv")[-300:]
BTC_D = rows("BTC_USDT-1d.csv")[-300:]
N = 100


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


def _series(symbol, tf):
    return Series("binance", symbol, tf)


def _start(data, n=N):
    """Where the newest n candles of ``data`` would start if none were missing."""
    return data[-1][0] - (n - 1) * (data[1][0] - data[0][0])


def _both(store, series, since):
    http, db = store.http, store.db
    plain = read_candles(http, db, "binance", series, N)
    fast = read_candles(http, db, "binance", series, N, since=since)
    return plain, fast


def test_complete_windows_in_one_request_equal_the_descending_read(store, monkeypatch):
    btc, eth, btcd = _series("BTC/USDT", H1), _series("ETH/USDT", H1), _series("BTC/USDT", D1)
    store.write(btc, BTC_H)
    store.write(eth, ETH_H[:-1])  # one candle behind: its window starts an hour earlier
    store.write(btcd, BTC_D)
    since = {"1h": _start(BTC_H), "1d": _start(BTC_D)}
    plain, fast = _both(store, [btc, eth, btcd], since)
    assert fast == plain and [len(v) for v in fast.values()] == [N, N, N]
    assert fast[("BTC/USDT", "1h")] == [tuple(map(float, r)) for r in BTC_H[-N:]]
    sent = []
    real = store.http.query
    monkeypatch.setattr(store.http, "query", lambda q, **kw: sent.append(q) or real(q, **kw))
    read_candles(store.http, store.db, "binance", [btc, btcd], N, since=since)
    assert len(sent) == 1 and "DESC" not in sent[0]  # both complete: no fallback


@pytest.mark.parametrize(
    "case",
    ["gap", "late", "extra", "stale", "empty", "since_too_early", "since_too_late"],
)
def test_any_other_window_is_the_descending_reads(store, case):
    btc, eth = _series("BTC/USDT", H1), _series("ETH/USDT", H1)
    data = list(BTC_H)
    since = _start(BTC_H)
    if case == "gap":
        data = data[:-10] + data[-9:]  # a hole inside the newest N
    elif case == "late":
        data = data[:-1]  # the newest closed candle not stored yet
    elif case == "extra":
        data = data + [(data[-1][0] + 3_600_000, *data[-1][1:])]  # a candle after "now"
    elif case == "stale":
        data = data[:-150]
    elif case == "empty":
        data = []
    elif case == "since_too_early":
        since -= 50 * 3_600_000
    else:
        since += 50 * 3_600_000
    if data:
        store.write(btc, data)
    store.write(eth, ETH_H)
    plain, fast = _both(store, [btc, eth], {"1h": since})
    assert fast == plain
    assert (("BTC/USDT", "1h") in fast) == bool(data)
