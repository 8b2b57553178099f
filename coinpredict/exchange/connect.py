"""Build the exchange adapter from Settings (ccxt is imported here, lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ConfigError

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter

# Spacing of request starts where ccxt's default is more cautious than the exchange's budget.
# Binance: 6,000 weight per minute and a klines request of up to 1,000 candles weighs 2, so
# 50 requests/s (20 ms apart) is the most it allows; ccxt's rateLimit for binance says 50 ms.
REQUEST_SPACING_MS = {"binance": 20.0}


def exchange(settings: Settings, clk: Clock) -> ExchangeAdapter:
    from coinpredict.exchange import ccxt_lazy
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.exchange.markets import cache_path

    if not ccxt_lazy.is_exchange_id(settings.exchange):
        raise ConfigError(f"COINPREDICT_EXCHANGE: {settings.exchange!r} is not a ccxt exchange id")
    return ExchangeAdapter(
        settings.exchange,
        settings.exchange_url,
        clock=clk,
        timeout_ms=settings.exchange_timeout_ms,
        rate_limit_ms=REQUEST_SPACING_MS.get(settings.exchange),
        markets_cache=cache_path(settings.state_dir, settings.exchange),
    )
