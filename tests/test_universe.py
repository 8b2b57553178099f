"""top:N symbols: ranked by the replay's 24h quote volume, stable until refresh, never deleted."""

import json
import urllib.request
from dataclasses import replace

import pytest
from helpers.samples import DATA

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import TopN, parse_timeframes
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES
from coinpredict.exchange.adapter import ExchangeAdapter
from coinpredict.ingest.universe import load_universe, rank_top
from coinpredict.jobs.runner import run_candle_job
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

NAMES = ["BTC", "ETH", "AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]


@pytest.fixture
def data_dir(tmp_path):
    """Real daily candles; the copies have their timestamps moved back by i days, so that at
    the same clock each symbol's last day is a different real day (different quote volumes)."""
    d = tmp_path / "replay"
    d.mkdir()
    src = (DATA / "BTC_USDT-1d.csv").read_text().splitlines()
    for i, name in enumerate(NAMES):
        if name == "ETH":
            (d / "ETH_USDT-1d.csv").write_text((DATA / "ETH_USDT-1d.csv").read_text())
            continue
        out = [src[0]]
        for line in src[1:]:
            ts, rest = line.split(",", 1)
            out.append(f"{int(ts) - i * 3 * DAY_MS},{rest}")
        (d / f"{name}_USDT-1d.csv").write_text("\n".join(out) + "\n")
    return d


def _replay_top(url, n):
    with urllib.request.urlopen(f"{url}/api/v3/ticker/24hr") as resp:
        tickers = json.load(resp)
    ranked = sorted(tickers, key=lambda t: -float(t["quoteVolume"]))
    return [t["symbol"].replace("USDT", "/USDT") for t in ranked[:n]]


def test_top_5_is_stable_until_refresh_and_keeps_data(settings, influx_http, data_dir):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    s = replace(settings, symbols=TopN(5, "USDT"), timeframes=parse_timeframes("1d"))
    last = int((DATA / "BTC_USDT-1d.csv").read_text().splitlines()[-1].split(",")[0])
    clock = FixedClock(last - 200 * DAY_MS + HOUR_MS)
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        since = clock.now_ms() - 10 * DAY_MS
        before = server.counts["ticker24hr"]
        report = run_candle_job("ingest", s, clock=clock, exchange=adapter, since_ms=since)
        assert server.counts["ticker24hr"] == before + 1  # one fetch_tickers() call
        first_set = load_universe(s.state_dir)["active"]
        assert sorted(first_set) == sorted(_replay_top(server.url, 5))
        assert sorted(o.series.symbol for o in report.outcomes) == sorted(first_set)
        before = server.counts["ticker24hr"]  # (the check above asked the replay itself)

        clock.advance(12 * HOUR_MS)  # volumes move, but the set stays until the refresh
        run_candle_job("ingest", s, clock=clock, exchange=adapter)
        assert load_universe(s.state_dir)["active"] == first_set
        assert server.counts["ticker24hr"] == before  # no re-ranking before the refresh

        for _ in range(40):  # refresh daily until the ranking changes
            clock.advance(DAY_MS)
            run_candle_job("ingest", s, clock=clock, exchange=adapter)
            universe = load_universe(s.state_dir)
            if universe["active"] != first_set:
                break
        adapter.close()
        assert sorted(universe["active"]) == sorted(_replay_top(server.url, 5))
    dropped = set(first_set) - set(universe["active"])
    assert dropped and set(universe["inactive"]) >= dropped
    for symbol in dropped:  # an inactive symbol keeps its data
        assert store.latest_open(Series("binance", symbol, TIMEFRAMES["1d"])) is not None


def test_rank_top_ignores_unsafe_and_other_quotes():
    volumes = {
        "BTC/USDT": 5.0,
        "ETH/BTC": 9.0,
        "BAD SYM/USDT": 99.0,
        "XRP/USDT": 1.0,
        "NAN/USDT": float("nan"),
        "ZERO/USDT": 0.0,
    }
    assert rank_top(volumes, TopN(3, "USDT")) == ["BTC/USDT", "XRP/USDT"]
    assert rank_top(volumes, TopN(2)) == ["ETH/BTC", "BTC/USDT"]
