"""The exchange adapter (docs/exchange.md).

``Candle``, ``Rejection`` and ``CandlePage`` import cheaply; ``ExchangeAdapter`` imports ccxt
(~0.5 s) on first access, so CLI modules can import this package at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coinpredict.exchange.types import Candle, CandlePage, Rejection

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter

__all__ = ["Candle", "CandlePage", "ExchangeAdapter", "Rejection"]


def __getattr__(name: str) -> Any:
    if name == "ExchangeAdapter":
        from coinpredict.exchange.adapter import ExchangeAdapter

        return ExchangeAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
