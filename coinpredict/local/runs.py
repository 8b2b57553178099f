"""Run records: one line per job run in a bounded history, for ``status`` and the textfile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from coinpredict.base.clock import Clock
from coinpredict.base.outcomes import RunSummary
from coinpredict.local.locks import job_locks
from coinpredict.local.state import append_jsonl, read_jsonl

HISTORY = 500

# A run that takes longer than this has overrun its slot (it would delay the next timer).
BUDGET_S = {
    "ingest": 50.0,
    "backfill": 3600.0,
    "detect-gaps": 600.0,
    "predict": 120.0,
    "export": 30.0,
    "monitor": 30.0,
    "train": 3600.0,
}


@dataclass
class RunRecord:
    job: str
    start_ms: int
    end_ms: int = 0
    outcome: str = "running"  # ok | partial | failed | busy
    series_ok: int = 0
    series_failed: int = 0
    message: str | None = None
    extra: dict = field(default_factory=dict)

    def fill(self, summary: RunSummary) -> None:
        self.outcome = summary.outcome
        self.series_ok = summary.series_ok
        self.series_failed = summary.series_failed
        self.message = summary.message
        self.extra = dict(summary.extra)

    def as_dict(self) -> dict:
        duration = max(0, self.end_ms - self.start_ms) / 1000
        return {
            "job": self.job,
            "start": self.start_ms,
            "end": self.end_ms,
            "duration_s": round(duration, 3),
            "outcome": self.outcome,
            "series_ok": self.series_ok,
            "series_failed": self.series_failed,
            "overrun": duration > BUDGET_S.get(self.job, 600.0),
            "message": self.message,
            **self.extra,
        }


def runs_path(state_dir: Path, job: str) -> Path:
    return state_dir / "runs" / f"{job}.jsonl"


def history(state_dir: Path, job: str) -> list[dict]:
    return read_jsonl(runs_path(state_dir, job))


@contextmanager
def recorded_run(
    state_dir: Path, job: str, clock: Clock, *, locks: list[str], wait_ms: int
) -> Iterator[RunRecord]:
    """Take the job's locks, yield a record to fill in, append it when the run ends.

    The caller sets ``outcome``/counts; an exception marks the run failed and propagates.
    A run refused by a held lock is not recorded (it did not run).
    """
    with job_locks(state_dir / "locks", locks, wait_ms=wait_ms, job=job):
        history(state_dir, job)  # a planted link or unreadable history fails before the run
        record = RunRecord(job=job, start_ms=clock.now_ms())
        try:
            yield record
        except BaseException as exc:
            record.outcome = "failed"
            record.message = str(exc) or type(exc).__name__
            raise
        finally:
            record.end_ms = clock.now_ms()
            if record.outcome == "running":
                record.outcome = "ok"
            append_jsonl(runs_path(state_dir, job), [record.as_dict()], keep=HISTORY)
