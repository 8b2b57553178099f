"""``coinpredict status``: the evaluation plus what helps an operator (job outcomes and timings).

``status_json`` is also what ``export`` writes to ``status.json`` (the same content).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import HealthCode
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.health.collect import evaluate
from coinpredict.health.freshness import Evaluation, series_json
from coinpredict.local.runs import history

JOBS = ("ingest", "backfill", "detect-gaps", "predict", "train", "export", "monitor")
RECENT = 100  # runs that the rates and percentiles are computed over
HEALTH_WORDS = {
    HealthCode.OK: "ok",
    HealthCode.WARNING: "warning",
    HealthCode.CRITICAL: "critical",
    HealthCode.UNKNOWN: "unknown",
}


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in (0, 1])."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def job_stats(records: list[dict[str, Any]], recent: int = RECENT) -> dict[str, Any] | None:
    """Last outcome, last success, p50/p95 duration, overrun and failure rates of one job."""
    if not records:
        return None
    window = records[-recent:]
    durations = sorted(float(r.get("duration_s", 0.0)) for r in window)
    n = len(window)
    last = records[-1]
    success = next((r for r in reversed(records) if r.get("outcome") == "ok"), None)
    return {
        "last_outcome": last.get("outcome"),
        "last_start": iso(int(last["start"])) if last.get("start") else None,
        "last_end": iso(int(last["end"])) if last.get("end") else None,
        "last_duration_s": last.get("duration_s"),
        "last_message": last.get("message"),
        "last_success": iso(int(success["end"])) if success and success.get("end") else None,
        "runs": n,
        "duration_p50_s": round(_percentile(durations, 0.5), 3),
        "duration_p95_s": round(_percentile(durations, 0.95), 3),
        "overrun_rate": round(sum(1 for r in window if r.get("overrun")) / n, 4),
        "failure_rate": round(sum(1 for r in window if r.get("outcome") == "failed") / n, 4),
        "partial_rate": round(sum(1 for r in window if r.get("outcome") == "partial") / n, 4),
    }


def job_histories(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {job: history(state_dir, job) for job in JOBS}


def jobs_summary(histories: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for job, records in histories.items():
        stats = job_stats(records)
        if stats is not None:
            out[job] = stats
    return out


def status_json(ev: Evaluation, jobs: dict[str, Any]) -> dict[str, Any]:
    """``status --json`` and ``status.json``: the status fields plus reasons, counts and jobs."""
    code = HealthCode(ev.exit_code)
    return {
        "generated_at": iso(ev.now_ms),
        "health": HEALTH_WORDS[code],
        "exit_code": int(code),
        "influxdb": {"reachable": ev.store_error is None, "error": ev.store_error},
        "counts": ev.counts(),
        "problems": list(ev.problems),
        "series": [series_json(h) for h in ev.series],
        "jobs": jobs,
    }


def run_status(
    settings: Settings, clock: Clock, series: Sequence[Series] | None = None
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate and summarise. Read-only apart from the metrics textfile the CLI writes after."""
    ev = evaluate(settings, clock, series)
    return ev, status_json(ev, jobs_summary(job_histories(settings.state_dir)))
