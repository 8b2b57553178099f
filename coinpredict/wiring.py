"""Build the adapters a command needs from Settings (heavy imports happen here, lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coinpredict.clock import Clock, SystemClock
from coinpredict.config import Settings
from coinpredict.store.http import InfluxHTTP

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.store.candles import CandleStore


def clock() -> Clock:
    return SystemClock()


def influx(settings: Settings) -> InfluxHTTP:
    return InfluxHTTP(
        settings.influx_url,
        token=settings.influx_token,
        username=settings.influx_username,
        password=settings.influx_password,
    )


def candle_store(settings: Settings, http: InfluxHTTP | None = None) -> CandleStore:
    from coinpredict.store.candles import CandleStore

    return CandleStore(http or influx(settings), db=settings.influx_db, db_1m=settings.influx_db_1m)


def exchange(settings: Settings, clk: Clock) -> ExchangeAdapter:
    from coinpredict.exchange.adapter import ExchangeAdapter

    return ExchangeAdapter(
        settings.exchange, settings.exchange_url, clock=clk, timeout_ms=settings.exchange_timeout_ms
    )
