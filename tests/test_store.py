"""The InfluxDB store against a real influxd."""

import struct

import polars as pl
import pytest
from helpers.samples import rows

from coinpredict.base.errors import StoreError, StoreUnavailableError
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.store.candles import CandleStore
from coinpredict.store.escape import field_float, ident, literal, tag
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.setup import init_storage


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_50k_real_candles_round_trip_bitwise(store):
    sets = [
        ("BTC/USDT", "1h", "BTC_USDT-1h.csv"),
        ("ETH/USDT", "1h", "ETH_USDT-1h.csv"),
        ("BTC/USDT", "1d", "BTC_USDT-1d.csv"),
        ("ETH/USDT", "1d", "ETH_USDT-1d.csv"),
        ("BTC/USDT", "1w", "BTC_USDT-1w.csv"),
        ("BTC/USDT", "1M", "BTC_USDT-1M.csv"),
        ("BTC/USDT", "1m", "BTC_USDT-1m.csv"),
    ]
    # repeat the real samples under other symbols until we pass 50,000 candles
    expected = {}
    total = 0
    copy = 0
    while total < 50_000:
        for symbol, tf, name in sets:
            sym = symbol if copy == 0 else f"{symbol.split('/')[0]}{copy}/USDT"
            series = Series("binance", sym, TIMEFRAMES[tf])
            data = rows(name)
            if tf == "1m":
                continue  # 1m sample is from 2021: beyond the 180-day retention; tested below
            assert store.write(series, data) == len(data)
            expected[series] = data
            total += len(data)
        copy += 1
    assert total >= 50_000
    for series, data in expected.items():
        frame = store.read(series)
        assert frame.schema == pl.Schema(
            {
                "timestamp": pl.Int64,
                "open": pl.Float64,
                "high": pl.Float64,
                "low": pl.Float64,
                "close": pl.Float64,
                "volume": pl.Float64,
            }
        )
        assert frame.height == len(data)
        got = frame.rows()
        for a, b in zip(got, data, strict=True):
            assert a[0] == b[0]
            assert [_bits(x) for x in a[1:]] == [_bits(x) for x in b[1:]]


def test_idempotent_writes_and_edges(store):
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1d"])
    data = rows("BTC_USDT-1d.csv")
    store.write(series, data)
    store.write(series, data[:100])
    assert store.read(series).height == len(data)
    assert store.first_open(series) == data[0][0]
    assert store.latest_open(series) == data[-1][0]
    last5 = store.read(series, last=5)
    assert last5["timestamp"].to_list() == [r[0] for r in data[-5:]]
    ts = store.timestamps(series, data[10][0], data[20][0])
    assert ts.tolist() == [r[0] for r in data[10:21]]
    store.delete(series, data[0][0], data[0][0])
    assert store.first_open(series) == data[1][0]


def test_whole_floats_come_back_as_floats(store):
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    store.write(series, [(3_600_000, 100.0, 101.0, 99.0, 100.0, 0.0)])
    frame = store.read(series)
    assert frame["close"].dtype == pl.Float64
    assert frame.row(0) == (3_600_000, 100.0, 101.0, 99.0, 100.0, 0.0)


def test_escaping_never_lets_a_value_through():
    assert tag("a b,c=d") == r"a\ b\,c\=d"
    assert literal("x' OR 1=1 --") == r"'x\' OR 1=1 --'"
    assert ident('candles"; DROP') == r'"candles\"; DROP"'
    with pytest.raises(ValueError, match="line break"):
        tag("BTC/USDT\nevil")
    with pytest.raises(ValueError, match="line break"):
        literal("BTC/USDT\nevil")
    with pytest.raises(ValueError, match="non-finite"):
        field_float(float("nan"))
    assert field_float(1.0) == "1.0" and field_float(2e-05) == "2e-05"


def test_tiny_and_huge_values_round_trip(store):
    series = Series("binance", "SHIB/USDT", TIMEFRAMES["1h"])
    candle = (7_200_000, 2.334e-05, 2.5e-05, 1e-08, 2.4e-05, 1.23456789e15)
    store.write(series, [candle])
    assert store.read(series).row(0) == candle


def test_unreachable_influx():
    http = InfluxHTTP("http://127.0.0.1:9")
    with pytest.raises(StoreUnavailableError) as info:
        http.ping()
    assert str(info.value) == "InfluxDB at http://127.0.0.1:9 is unreachable: Connection refused"


def test_missing_database(influx_http):
    store = CandleStore(influx_http, db="does_not_exist", db_1m="nope_1m")
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    with pytest.raises(StoreError) as info:
        store.write(series, [(0, 1.0, 1.0, 1.0, 1.0, 1.0)])
    assert str(info.value).startswith(
        f"InfluxDB database 'does_not_exist' does not exist at {influx_http.url} "
        "(run `coinpredict init`)"
    )


def test_partial_write_is_reported(settings, influx_http, store):
    with pytest.raises(StoreError) as info:
        influx_http.write(settings.influx_db, b'candles,symbol=X close=1.0 1\ncandles close="s" 1')
    assert str(info.value).startswith("InfluxDB refused part of a write (HTTP 400): ")


def test_init_is_idempotent_and_sets_retention(settings, influx_http):
    first = init_storage(settings, influx_http)
    assert first.actions == [
        f"created database {settings.influx_db!r} (kept forever, 52w shards)",
        f"created database {settings.influx_db_1m!r} (retention 180d, 7d shards)",
    ]
    second = init_storage(settings, influx_http)
    assert second.actions == [] and second.ok
    rps = influx_http.query(f"SHOW RETENTION POLICIES ON {ident(settings.influx_db_1m)}")
    values = {r[0]: r for r in rps[0]["values"]}
    assert values["rolling"][1] == "4320h0m0s"  # 180 days
    assert values["rolling"][2] == "168h0m0s"  # 7-day shards
    assert values["rolling"][4] is True  # default


def test_init_shards_of_a_short_one_minute_window(settings, influx_http):
    """A 1m window shorter than a week gets shards as long as the window (InfluxDB refuses a
    shard group longer than the retention)."""
    from dataclasses import replace

    short = replace(settings, one_minute_window_ms=2 * 86_400_000)
    assert init_storage(short, influx_http).actions[-1].endswith("(retention 2d, 2d shards)")
    rps = influx_http.query(f"SHOW RETENTION POLICIES ON {ident(settings.influx_db_1m)}")
    values = {r[0]: r for r in rps[0]["values"]}
    assert values["rolling"][1:3] == ["48h0m0s", "48h0m0s"]


def test_basic_auth_and_401(tmp_path):
    from coinpredict.replay.influxd import start_influxd

    proc = start_influxd(tmp_path / "auth", auth=True)
    try:
        anon = InfluxHTTP(proc.url)
        anon.query("CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES", write=True)
        good = InfluxHTTP(proc.url, username="admin", password="pw")
        good.query("CREATE DATABASE a", write=True)
        assert good.query("SHOW DATABASES")[0]["values"] == [["a"]]
        bad = InfluxHTTP(proc.url, username="admin", password="wrong")
        with pytest.raises(StoreError) as info:
            bad.query("SHOW DATABASES")
        assert str(info.value).startswith(
            f"InfluxDB at {proc.url} refused the credentials (HTTP 401): "
        )
        assert "wrong" not in str(info.value)
    finally:
        proc.stop()


def test_multi_batch_write_raises_the_first_failure(influx_http):
    store = CandleStore(influx_http, db="nope_multi", db_1m="nope_multi_1m")
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    data = rows("BTC_USDT-1h.csv")[:12_000]  # three batches
    with pytest.raises(StoreError, match=r"^InfluxDB database 'nope_multi' does not exist"):
        store.write(series, data)


def test_multi_batch_write_is_complete_and_exact(store):
    series = Series("binance", "ETH/USDT", TIMEFRAMES["1h"])
    data = rows("ETH_USDT-1h.csv")
    assert store.write(series, data) == len(data) > 2 * 5000
    assert [_bits(x) for r in store.read(series).rows() for x in r[1:]] == [
        _bits(x) for r in data for x in r[1:]
    ]


def test_text_from_the_exchange_is_written_as_it_came_and_reads_back_exact(store):
    """Binance's decimal text goes into the line protocol as it came (no float formatting): every
    plain decimal form that the page check lets through is the same float64 in InfluxDB."""
    series = Series("binance", "TXT/USDT", TIMEFRAMES["1h"])
    forms = [
        ["8632.97000000", "8700", "8600.5", "8650.12345678", "0.00000000"],
        [".5", "7.", "0.25", "3.", "1"],
        ["0.00000001", "123456789.123456789", "0.00000001", "0.1", "99999999999999.99999999"],
        ["1", "1", "1", "1", "0"],
    ]
    t0 = 1_600_000_000_000 // 3_600_000 * 3_600_000
    candles = [(t0 + i * 3_600_000, *(float(t) for t in f)) for i, f in enumerate(forms)]
    assert store.write(series, candles, forms) == len(forms)
    got = store.read(series).rows()
    assert [tuple(map(_bits, r[1:])) for r in got] == [
        tuple(_bits(float(t)) for t in f) for f in forms
    ]
    assert [r[0] for r in got] == [c[0] for c in candles]


def test_read_extending_reuses_exactly_the_part_of_the_window_it_covers(store):
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    data = rows("BTC_USDT-1h.csv")[:500]
    store.write(series, data)
    known = store.read(series, data[10][0], data[400][0])
    # the window moves on: it starts inside ``known``, ends at or after its last candle
    for start, end in [(data[50][0], data[400][0]), (data[10][0], data[499][0])]:
        got = store.read_extending(series, start, end, known)
        assert got is not None  # reused, not read again in full
        assert got.rows() == store.read(series, start, end).rows()
    store.delete(series, data[200][0], data[200][0])  # a candle the copy still has
    assert store.read_extending(series, data[50][0], data[450][0], known) is None


def test_latest_open_with_a_lower_bound_is_the_newest_wherever_it_is(store, monkeypatch):
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    assert store.latest_open(series, since_ms=0) is None  # nothing stored
    data = [(1_600_000_000_000 + i * 3_600_000, 1.0, 2.0, 0.5, 1.5, 10.0) for i in range(50)]
    store.write(series, data)
    newest = data[-1][0]
    for since in (data[0][0], data[-2][0], newest, newest + 1, newest + 100 * 3_600_000):
        assert store.latest_open(series, since_ms=since) == newest, since
    sent = []
    real = store.http.query
    monkeypatch.setattr(store.http, "query", lambda q, **kw: sent.append(q) or real(q, **kw))
    store.latest_open(series, since_ms=data[-2][0])
    assert len(sent) == 1 and f"time >= {data[-2][0]}ms" in sent[0]  # found within the bound
    store.latest_open(series, since_ms=newest + 1)
    assert len(sent) == 3 and "time >=" not in sent[2]  # none there: asked without the bound
