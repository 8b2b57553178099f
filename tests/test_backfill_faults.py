"""`coinpredict backfill` through the real CLI against a replay that behaves like Binance at its
worst: 20 % injected faults of every kind (5xx with and without Binance bodies, -1003 with
Retry-After, bans, timeouts, drops, bad bodies, impossible candles), and symbols it does not
know."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from helpers.samples import DATA, rows

from coinpredict.base.clock import SystemClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES, iso
from coinpredict.replay import ALL_FAULTS
from coinpredict.replay.faults import Answer
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000
CODES = (-1000, -1001, -1006, -1007, -1008)
# BTC and ETH samples, and five more symbols with BTC's candles: ~100 pages in all
COPIES = ("SOL/USDT", "XLM/USDT", "TRX/USDT", "DOT/USDT", "LTC/USDT")
SOURCE = {sym: rows(f"{sym.replace('/', '_')}-1h.csv") for sym in ("BTC/USDT", "ETH/USDT")}
SOURCE.update({sym: SOURCE["BTC/USDT"] for sym in COPIES})
# the replay shifts the samples to end now; the backfills stop two days before, so that no
# candle closes during a run
UNTIL = SystemClock().now_ms() - 2 * DAY_MS


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


@pytest.fixture
def data_dir(replay_data):
    btc = (DATA / "BTC_USDT-1h.csv").read_text()
    extra = {f"{sym.replace('/', '_')}-1h.csv": btc for sym in COPIES}
    return replay_data("BTC_USDT-1h.csv", "ETH_USDT-1h.csv", extra=extra)


def _bits(row):
    return (row[0], *(struct.pack("<d", x) for x in row[1:]))


def _replay(data_dir, **options):
    return ReplayServer(data_dir, shift_to_now=True, **options)


def _backfill(env, server, symbols, until=UNTIL):
    env = {
        **os.environ,
        **env,
        "COINPREDICT_EXCHANGE_URL": server.url,
        "COINPREDICT_SYMBOLS": symbols,
        "COINPREDICT_TIMEFRAMES": "1h",
        "COINPREDICT_EXCHANGE_TIMEOUT": "2s",
    }
    return subprocess.run(
        [sys.executable, "-m", "coinpredict", "backfill", "--until", iso(until), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _stored_exactly(store, server, symbol):
    shift = server.data.get(symbol.replace("/", ""), "1h").shift_ms
    want = [
        (r[0] + shift, *r[1:])
        for r in SOURCE[symbol]
        if r[0] + shift <= TIMEFRAMES["1h"].floor(UNTIL)
    ]
    got = store.read(Series("binance", symbol, TIMEFRAMES["1h"])).rows()
    return len(want) > 1000 and [_bits(r) for r in got] == [_bits(r) for r in want]


def test_twenty_percent_faults_of_every_kind_exit_0_and_store_exactly(
    settings_env, store, data_dir
):
    assert {"5xx", "5xx_json", "429", "418"} <= set(ALL_FAULTS)
    endpoints = ("klines", "exchangeInfo", "time")
    with _replay(
        data_dir, fault_rate=0.2, seed=11, slow_s=2.5, fault_endpoints=endpoints
    ) as server:
        # every kind and every temporary Binance code on a 5xx once, one request in five, then
        # 20 % drawn at random
        kinds = [*ALL_FAULTS, *(Answer.binance(500 + k, code) for k, code in enumerate(CODES))]
        server.script_faults(*[x for kind in kinds for x in (kind, "ok", "ok", "ok", "ok")])
        done = _backfill(settings_env, server, ",".join(SOURCE))
        injected = dict(server.faults_injected)
    assert done.returncode == 0, [x for x in done.stderr.splitlines() if "ERROR" in x]
    assert all(_stored_exactly(store, server, symbol) for symbol in SOURCE)
    assert set(injected) == set(ALL_FAULTS) | {
        "answer:500",
        "answer:501",
        "answer:502",
        "answer:503",
        "answer:504",
    }, injected
    assert sum(injected.values()) > len(ALL_FAULTS)


def test_an_unknown_symbol_fails_that_series_only(settings_env, store, data_dir):
    with _replay(data_dir) as server:
        done = _backfill(settings_env, server, "BTC/USDT,XRP/USDT,ETH/USDT")
    assert done.returncode == 4, done.stderr
    report = json.loads(done.stdout)
    failed = [s for s in report["series"] if not s["ok"]]
    assert [(s["symbol"], s["error"]) for s in failed] == [
        ("XRP/USDT", "binance has no spot market XRP/USDT")
    ]
    assert _stored_exactly(store, server, "BTC/USDT") and _stored_exactly(store, server, "ETH/USDT")


def test_a_symbol_delisted_since_the_markets_were_cached_fails_that_series_only(
    settings_env, store, data_dir
):
    with _replay(data_dir) as server:
        first = _backfill(settings_env, server, "BTC/USDT,ETH/USDT", until=UNTIL - 30 * DAY_MS)
        assert first.returncode == 0, first.stderr
        server.set_status("ETHUSDT", None)  # the cached market list still has it
        server.reset_counters()
        done = _backfill(settings_env, server, "BTC/USDT,ETH/USDT")
        info = server.counts["exchangeInfo"]
    assert done.returncode == 4, done.stderr
    report = {s["symbol"]: s for s in json.loads(done.stdout)["series"]}
    assert report["ETH/USDT"]["error"].startswith("binance: unknown symbol (")
    assert report["BTC/USDT"]["ok"] and _stored_exactly(store, server, "BTC/USDT")
    assert info == 1  # the -1121 answer refreshed the market list once
