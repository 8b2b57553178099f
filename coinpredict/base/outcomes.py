"""Per-series outcomes and the exit code they add up to (SPEC section 4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coinpredict.base.errors import ExitCode
from coinpredict.base.series import Series


@dataclass
class SeriesOutcome:
    series: Series
    ok: bool = True
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.ok = False
        self.error = message

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.series.symbol,
            "timeframe": self.series.timeframe.code,
            "ok": self.ok,
            "error": self.error,
            **self.details,
        }


@dataclass
class Report:
    job: str
    outcomes: list[SeriesOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SeriesOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        failed = len(self.failed)
        if failed == 0:
            return ExitCode.OK
        if failed == len(self.outcomes):
            return ExitCode.FAILURE
        return ExitCode.PARTIAL

    @property
    def outcome(self) -> str:
        return {int(ExitCode.OK): "ok", int(ExitCode.FAILURE): "failed"}.get(
            int(self.exit_code), "partial"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "outcome": self.outcome,
            "exit_code": int(self.exit_code),
            "series": [o.as_dict() for o in self.outcomes],
            "notes": self.notes,
        }
