"""Value types of the exchange adapter (no ccxt import here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from coinpredict.base.candles import Candle, Rejection

__all__ = ["Candle", "CandlePage", "Rejection"]


@dataclass(frozen=True)
class CandlePage:
    """One page of ``fetch_closed``: the open-time range ``[start_ms, end_ms]`` (inclusive) that
    the exchange answered for. Every grid point of the range that is not in ``candles`` (nor in
    ``rejected``) is a candle the exchange does not have.

    ``confirmed_empty`` is True only when the exchange answered the range with a genuine empty
    JSON list and the whole range lies before the exchange's clock: it has no candles there.
    """

    start_ms: int
    end_ms: int
    candles: list[Candle]
    rejected: list[Rejection] = field(default_factory=list)
    confirmed_empty: bool = False
