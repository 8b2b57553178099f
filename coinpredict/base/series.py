"""The identity of one candle series: exchange x symbol x timeframe."""

from __future__ import annotations

from dataclasses import dataclass

from coinpredict.base.symbols import file_stem
from coinpredict.base.timeframes import Timeframe


@dataclass(frozen=True, slots=True)
class Series:
    exchange: str
    symbol: str
    timeframe: Timeframe

    @property
    def stem(self) -> str:
        """``BTC_USDT_1h``: used in state and model file names (case kept: 1m vs 1M)."""
        return f"{file_stem(self.symbol)}_{self.timeframe.code}"

    @property
    def label(self) -> str:
        return f"{self.symbol} {self.timeframe.code}"

    def __str__(self) -> str:
        return self.label
