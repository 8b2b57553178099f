"""Build the adapters a command needs from Settings (heavy imports happen here, lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coinpredict.clock import Clock, SystemClock
from coinpredict.config import Settings
from coinpredict.errors import ConfigError
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


# Spacing of request starts where ccxt's default is more cautious than the exchange's budget.
# Binance: 6,000 weight per minute and a klines request of up to 1,000 candles weighs 2, so
# 50 requests/s (20 ms apart) is the most it allows; ccxt's rateLimit for binance says 50 ms.
REQUEST_SPACING_MS = {"binance": 20.0}


def exchange(settings: Settings, clk: Clock) -> ExchangeAdapter:
    import ccxt

    from coinpredict.exchange.adapter import ExchangeAdapter

    if settings.exchange not in ccxt.exchanges:
        raise ConfigError(f"COINPREDICT_EXCHANGE: {settings.exchange!r} is not a ccxt exchange id")
    return ExchangeAdapter(
        settings.exchange,
        settings.exchange_url,
        clock=clk,
        timeout_ms=settings.exchange_timeout_ms,
        rate_limit_ms=REQUEST_SPACING_MS.get(settings.exchange),
    )
