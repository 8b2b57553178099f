"""Symbols: the one place that says what a safe ccxt spot symbol looks like.

Only ``BASE/QUOTE`` with upper-case letters and digits is accepted, so a symbol can never escape a
directory, an InfluxQL literal or a line-protocol tag, whatever else escapes it too.
"""

from __future__ import annotations

import re

from coinpredict.base.errors import UnsafeSymbolError

_SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}")


def validate_symbol(symbol: str, *, setting: str = "symbol") -> str:
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise UnsafeSymbolError(
            f"{setting}: {symbol!r} is not a safe spot symbol (expected BASE/QUOTE in upper-case "
            "letters and digits, e.g. BTC/USDT)"
        )
    return symbol


def file_stem(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC_USDT`` (after validation)."""
    return validate_symbol(symbol).replace("/", "_")


def market_id(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (Binance's market id)."""
    return validate_symbol(symbol).replace("/", "")
