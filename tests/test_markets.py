"""The market list cached in the state dir, symbols that stop trading or disappear, and the
used-weight header: real ccxt through the adapter against the replay (and influxd for ingest)."""

from __future__ import annotations

import logging
import time

import pytest
from helpers.replay import REPLAY_DATA_DIR, REPLAY_NOW_MS, read_csv_candles

from coinpredict.base.clock import FixedClock
from coinpredict.base.errors import FatalExchangeError
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES
from coinpredict.exchange.markets import cache_path, load_cache

H1 = TIMEFRAMES["1h"]
BTC_1H = read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1h.csv")
RECENT = REPLAY_NOW_MS - 10 * HOUR_MS


def _candles(adapter, symbol="BTC/USDT", since=RECENT):
    return sum(len(p.candles) for p in adapter.fetch_closed(symbol, H1, since))


def test_markets_are_cached_for_a_day(replay_server, replay_adapter, tmp_path):
    server = replay_server(markets=300)
    cache = cache_path(tmp_path, "binance")
    clock = FixedClock(REPLAY_NOW_MS)
    first = replay_adapter(server, markets_cache=cache, clock=clock)
    assert _candles(first) == 9
    assert server.counts["exchangeInfo"] == 1
    cached = load_cache(cache)
    assert cached is not None and len(cached.markets) == 300
    assert cached.weight_limit == 6000 and cached.weight_window_s == 60
    # the next runs the same day read the cache: no exchangeInfo request at all
    for _ in range(3):
        assert _candles(replay_adapter(server, markets_cache=cache, clock=clock)) == 9
    assert server.counts["exchangeInfo"] == 1
    # a day later the list is fetched again, once
    clock.ms += DAY_MS
    later = replay_adapter(server, markets_cache=cache, clock=clock)
    later.symbols()
    later.symbols()
    assert server.counts["exchangeInfo"] == 2


def test_an_unknown_symbol_answer_refreshes_the_list_once(replay_server, replay_adapter, tmp_path):
    server = replay_server(markets=50)
    cache = cache_path(tmp_path, "binance")
    replay_adapter(server, markets_cache=cache).symbols()  # cached with ETH/USDT listed
    server.set_status("ETHUSDT", None)  # delisted since
    server.reset_counters()
    adapter = replay_adapter(server, markets_cache=cache)
    with pytest.raises(FatalExchangeError) as err:
        _candles(adapter, "ETH/USDT")
    assert str(err.value).startswith("binance: unknown symbol (")
    assert server.counts["exchangeInfo"] == 1  # refreshed at once ...
    assert "ETH/USDT" not in load_cache(cache).markets
    with pytest.raises(FatalExchangeError, match="has no spot market NEW/USDT"):
        _candles(adapter, "NEW/USDT")
    assert server.counts["exchangeInfo"] == 1  # ... and never twice in a run
    assert _candles(adapter) == 9
    # the next run knows ETH/USDT is gone without asking the exchange
    server.reset_counters()
    with pytest.raises(FatalExchangeError, match="has no spot market ETH/USDT"):
        _candles(replay_adapter(server, markets_cache=cache), "ETH/USDT")
    assert server.counts["klines"] == 0


def test_a_symbol_not_trading_is_reported_once_and_skipped(
    replay_server, replay_adapter, tmp_path, settings, influx_http, caplog
):
    from dataclasses import replace

    from coinpredict.jobs.runner import run_candle_job
    from coinpredict.store.setup import init_storage

    init_storage(settings, influx_http)
    s = replace(settings, symbols=("BTC/USDT", "ETH/USDT"))
    clock = FixedClock(REPLAY_NOW_MS)
    server = replay_server(clock=clock)
    server.set_status("ETHUSDT", "BREAK")
    cache = cache_path(s.state_dir, "binance")

    def run():
        adapter = replay_adapter(server, markets_cache=cache, clock=clock)
        report = run_candle_job("ingest", s, clock=clock, exchange=adapter, since_ms=RECENT)
        return {o.series.symbol: o for o in report.outcomes}, report.exit_code

    with caplog.at_level(logging.WARNING, logger="coinpredict.exchange"):
        outcomes, code = run()
    assert code == 0 and outcomes["ETH/USDT"].ok
    assert outcomes["ETH/USDT"].detail.skipped == "not trading (status BREAK)"
    assert outcomes["BTC/USDT"].detail.stored == 9
    assert not server.klines_requests_overlapping("ETHUSDT", "1h", 0, 2**62)
    assert sum("ETH/USDT is not trading" in r.message for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coinpredict.exchange"):
        outcomes, code = run()  # the same day: skipped again, silently, without requests
    assert outcomes["ETH/USDT"].detail.skipped == "not trading (status BREAK)"
    assert not any("not trading" in r.message for r in caplog.records)
    assert not server.klines_requests_overlapping("ETHUSDT", "1h", 0, 2**62)
    # trading again: seen at the daily refresh
    server.set_status("ETHUSDT", "TRADING")
    outcomes, _ = run()
    assert outcomes["ETH/USDT"].detail.skipped is not None
    clock.ms += DAY_MS
    outcomes, _ = run()
    assert outcomes["ETH/USDT"].detail.skipped is None
    assert outcomes["ETH/USDT"].detail.stored > 0


def test_the_used_weight_header_slows_the_adapter_before_a_429(replay_server, replay_adapter):
    # 60 weight per 3 s window: four full BTC histories (14 pages of weight 2 each) plus
    # exchangeInfo (20) and time (1) need several windows
    server = replay_server(weight_limit=60, weight_window_s=3)
    adapter = replay_adapter(server, sleep=time.sleep, concurrency=1)
    for _ in range(4):
        assert _candles(adapter, since=0) == len(BTC_1H)
    statuses = {r.status for r in server.klines_log}
    assert statuses == {200}, statuses
    assert server.limiter is not None and server.limiter.violations == 0
    assert adapter.used_weight is not None and adapter.used_weight <= 60
