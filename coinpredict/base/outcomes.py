"""Per-series outcomes, the exit code they add up to, and what a run record says of a job.

The one mapping from results to exit codes and outcome words: :func:`code_for` (how many of how
many series failed), :func:`worst` (several stages: failed before partial before ok) and
:data:`OUTCOME_WORDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from coinpredict.base.errors import ExitCode
from coinpredict.base.series import Series

OUTCOME_WORDS = {ExitCode.OK: "ok", ExitCode.FAILURE: "failed", ExitCode.PARTIAL: "partial"}


def code_for(failed: int, total: int) -> ExitCode:
    """0 when nothing failed, 1 when everything did, else 4 (partial)."""
    if failed == 0:
        return ExitCode.OK
    return ExitCode.FAILURE if failed >= total else ExitCode.PARTIAL


def worst(codes: Iterable[int]) -> ExitCode:
    """The worst of several exit codes: 1 (failed) before 4 (partial) before 0."""
    seen = set(codes)
    for code in (ExitCode.FAILURE, ExitCode.PARTIAL):
        if code in seen:
            return code
    return ExitCode.OK


def outcome_word(code: int) -> str:
    return OUTCOME_WORDS.get(ExitCode(code), "failed")


@dataclass(frozen=True)
class RunSummary:
    """What a job's result puts in its run record (the runner copies it there)."""

    outcome: str
    series_ok: int = 0
    series_failed: int = 0
    message: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


_OPTIONAL = "coinpredict.optional"
_REMARK = "coinpredict.remark"


def optional(*, remark: bool = False) -> Any:
    """A :class:`Detail` field left out of the series' JSON while it is None (other fields are
    always there, None or not). A ``remark`` goes to a table's detail column, not a column of its
    own."""
    return field(default=None, metadata={_OPTIONAL: True, _REMARK: remark})


@dataclass
class Detail:
    """What one job did for one series beyond ok/error. Each job defines its own beside it; its
    fields, in order, are the series' keys after ``error`` (a field that is itself a Detail adds
    its own fields there)."""

    @property
    def was_skipped(self) -> bool:
        """The job had nothing to do for the series (counted as skipped in the run record)."""
        return False

    def as_dict(self) -> dict[str, object]:
        return {name: value for name, value, _ in self._entries()}

    def columns(self) -> dict[str, object]:
        """What a table shows in columns of their own: everything but the remarks."""
        return {name: value for name, value, remark in self._entries() if not remark}

    def remarks(self) -> str:
        return "; ".join(str(value) for _, value, remark in self._entries() if remark)

    def _entries(self) -> Iterator[tuple[str, object, bool]]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Detail):
                yield from value._entries()
            elif value is not None or not f.metadata.get(_OPTIONAL, False):
                yield f.name, value, bool(f.metadata.get(_REMARK, False))


DetailT = TypeVar("DetailT", bound=Detail)


@dataclass
class SeriesOutcome(Generic[DetailT]):
    series: Series
    detail: DetailT
    ok: bool = True
    error: str | None = None

    def fail(self, message: str) -> None:
        self.ok = False
        self.error = message

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.series.symbol,
            "timeframe": self.series.timeframe.code,
            "ok": self.ok,
            "error": self.error,
            **self.detail.as_dict(),
        }


@dataclass
class Report(Generic[DetailT]):
    job: str
    outcomes: list[SeriesOutcome[DetailT]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SeriesOutcome[DetailT]]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        return code_for(len(self.failed), len(self.outcomes))

    @property
    def outcome(self) -> str:
        return outcome_word(self.exit_code)

    def summary(self, error: str | None = None) -> RunSummary:
        """``error``: the run failed as a whole although it reports some series."""
        skipped = sum(1 for o in self.outcomes if o.detail.was_skipped)
        return RunSummary(
            outcome=self.outcome if error is None else "failed",
            series_ok=len(self.outcomes) - len(self.failed),
            series_failed=len(self.failed),
            message=error,
            extra={"skipped": skipped} if skipped else {},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "outcome": self.outcome,
            "exit_code": int(self.exit_code),
            "series": [o.as_dict() for o in self.outcomes],
            "notes": self.notes,
        }
