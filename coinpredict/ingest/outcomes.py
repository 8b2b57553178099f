"""What ``ingest``/``backfill`` and ``detect-gaps`` report per series (keys of their JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from coinpredict.base.outcomes import Detail, Report, SeriesOutcome, optional


@dataclass
class IngestDetail(Detail):
    stored: int = 0  # candles written
    pages: int = 0  # pages fetched
    rejected: int = 0  # candles quarantined
    skipped: str | None = optional()  # why no request was made (the market does not trade)
    note: str | None = optional(remark=True)
    cursor: int | None = None  # the open time of the newest stored candle (None: failed)

    @property
    def was_skipped(self) -> bool:
        return bool(self.skipped)


@dataclass
class GapsDetail(Detail):
    """Candle counts, all set once the series was checked (none when it failed)."""

    missing: int | None = optional()
    exchange_gaps: int | None = optional()
    refilled: int | None = optional()


IngestOutcome: TypeAlias = SeriesOutcome[IngestDetail]
IngestReport: TypeAlias = Report[IngestDetail]
GapsReport: TypeAlias = Report[GapsDetail]
