"""The exchange adapter (docs/exchange.md).

``Candle``, ``Rejection`` and ``CandlePage`` import cheaply; ``ExchangeAdapter`` imports ccxt
on first access, so CLI modules can import this package at module level. Importing the package
registers ccxt as a lazy package (:mod:`coinpredict.exchange.ccxt_lazy`: only the exchange in
use is imported, not ccxt's 104), before any module of the package imports ccxt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coinpredict.exchange import ccxt_lazy
from coinpredict.exchange.types import Candle, CandlePage, Rejection

ccxt_lazy.install()

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter

__all__ = ["Candle", "CandlePage", "ExchangeAdapter", "Rejection"]


def __getattr__(name: str) -> Any:
    if name == "ExchangeAdapter":
        from coinpredict.exchange.adapter import ExchangeAdapter

        return ExchangeAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
