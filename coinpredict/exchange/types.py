"""Value types of the exchange adapter (no ccxt import here)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from operator import attrgetter

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
    # the candles' values as the exchange sent them (coinpredict.base.candles.CheckedPage)
    texts: list[list[str]] | None = None

    def between(
        self, first: int | None = None, last: int | None = None
    ) -> tuple[list[Candle], list[list[str]] | None]:
        """The candles with ``first <= open time <= last`` (either bound optional) and their
        texts. The candles are ascending, so this is one slice."""
        lo = 0 if first is None else bisect_left(self.candles, first, key=_TS)
        hi = len(self.candles) if last is None else bisect_right(self.candles, last, key=_TS)
        if lo == 0 and hi == len(self.candles):
            return self.candles, self.texts
        return self.candles[lo:hi], None if self.texts is None else self.texts[lo:hi]


_TS = attrgetter("ts")
