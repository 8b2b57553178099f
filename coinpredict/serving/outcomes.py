"""What ``predict``, ``train`` and ``models promote|rollback`` report per series (keys of their
JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from coinpredict.base.outcomes import Detail, Report, SeriesOutcome, optional


@dataclass
class PredictDetail(Detail):
    skipped: bool = False  # no new closed candle since the last forecast: nothing to do
    # the forecast stored (all three set together)
    last_closed_candle: str | None = optional()
    model: str | None = optional()
    version: str | None = optional()
    shadow: str | None = optional()  # the shadow version that forecast too
    shadow_error: str | None = optional()  # why the shadow could not forecast

    @property
    def was_skipped(self) -> bool:
        return self.skipped


@dataclass
class TrainedModel(Detail):
    """The shadow a training registered, with its backtest figures (None: not measured)."""

    version: str
    relative_mae: float | None
    coverage: float | None
    samples: int | None


@dataclass
class TrainDetail(Detail):
    pruned: str | None = optional()  # versions removed, comma-separated
    trained: TrainedModel | None = optional()
    promoted: str | None = optional()  # "yes", or "refused: why" (train --promote)
    skipped: str | None = optional()  # too little history to train: why

    @property
    def was_skipped(self) -> bool:
        return bool(self.skipped)


@dataclass
class RegistryDetail(Detail):
    champion: str | None = optional()  # the version serving after the change


PredictOutcome: TypeAlias = SeriesOutcome[PredictDetail]
PredictReport: TypeAlias = Report[PredictDetail]
TrainOutcome: TypeAlias = SeriesOutcome[TrainDetail]
RegistryOutcome: TypeAlias = SeriesOutcome[RegistryDetail]
