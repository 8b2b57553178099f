"""The replay exchange: a Binance-compatible spot REST server over CSV candles (docs/replay.md)."""

from coinpredict.replay.data import ReplayData, ReplayDataError, Series
from coinpredict.replay.faults import ALL as ALL_FAULTS
from coinpredict.replay.faults import FaultPlan, parse_kinds
from coinpredict.replay.server import KlinesRequest, ReplayServer

__all__ = [
    "ALL_FAULTS",
    "FaultPlan",
    "KlinesRequest",
    "ReplayData",
    "ReplayDataError",
    "ReplayServer",
    "Series",
    "parse_kinds",
]
