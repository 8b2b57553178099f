"""Prometheus textfile ``coinpredict.prom`` (node_exporter's textfile collector reads it).

Call :func:`write_textfile` at the end of every job run, *after* its ``recorded_run`` block has
exited (so the run's record is in the history). It never raises: a metrics problem is logged and
the job's own outcome stands. Every metric is documented in docs/health.md.

``coinpredict_job_runs_total`` is a real counter: the run histories are bounded, so the totals are
kept in STATE_DIR/metrics-counters.json and advanced by the records not counted yet (under a lock,
so two jobs finishing together never lose a count).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, CoinpredictError
from coinpredict.base.redact import redact
from coinpredict.health.freshness import STATES, Evaluation
from coinpredict.health.status import _percentile, job_histories
from coinpredict.local import atomic
from coinpredict.local.locks import job_locks

log = logging.getLogger("coinpredict.health.metrics")

FILENAME = "coinpredict.prom"
COUNTERS = "metrics-counters.json"
OUTCOMES = ("ok", "partial", "failed")
RECENT = 100


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items()) + "}"


def _value(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        samples = list(samples)
        if not samples:
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _update_counters(
    path: Path, histories: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, int]]:
    try:
        stored = atomic.read_json(path)
    except FileNotFoundError:
        stored = {}
    except ArtifactError as exc:
        log.warning("resetting metrics counters: %s", exc)
        stored = {}
    jobs = stored.get("jobs", {}) if isinstance(stored, dict) else {}
    out: dict[str, dict[str, int]] = {}
    changed = False
    for job, records in histories.items():
        raw = jobs.get(job)
        entry: dict[str, Any] = raw if isinstance(raw, dict) else {}
        seen = int(entry.get("seen_start", -1))
        totals = {o: int(entry.get("runs", {}).get(o, 0)) for o in OUTCOMES}
        for r in records:
            start = int(r.get("start", 0))
            if start > seen and r.get("outcome") in OUTCOMES:
                totals[r["outcome"]] += 1
                seen = start
                changed = True
        jobs[job] = {"seen_start": seen, "runs": totals}
        out[job] = totals
    if changed or not path.exists():
        atomic.write_json(path, {"jobs": jobs})
    return out


def render(
    evaluation: Evaluation | None,
    histories: dict[str, list[dict[str, Any]]],
    totals: dict[str, dict[str, int]],
    now_ms: int,
) -> str:
    """The text exposition format (pure; tests parse it strictly)."""
    w = _Writer()
    w.family(
        "coinpredict_textfile_timestamp_seconds",
        "gauge",
        "Unix time at which this file was written.",
        [({}, now_ms / 1000)],
    )
    last_success = []
    last_run = []
    last_duration = []
    last_outcome = []
    runs_total = []
    p50 = []
    p95 = []
    overrun = []
    failure = []
    for job, records in histories.items():
        if job in totals:
            runs_total += [({"job": job, "outcome": o}, totals[job][o]) for o in OUTCOMES]
        if not records:
            continue
        last = records[-1]
        lab = {"job": job}
        ok = next((r for r in reversed(records) if r.get("outcome") == "ok"), None)
        if ok is not None:
            last_success.append((lab, int(ok.get("end", 0)) / 1000))
        last_run.append((lab, int(last.get("end", 0)) / 1000))
        last_duration.append((lab, float(last.get("duration_s", 0.0))))
        last_outcome += [
            ({"job": job, "outcome": o}, int(last.get("outcome") == o)) for o in OUTCOMES
        ]
        window = records[-RECENT:]
        durations = sorted(float(r.get("duration_s", 0.0)) for r in window)
        p50.append((lab, _percentile(durations, 0.5)))
        p95.append((lab, _percentile(durations, 0.95)))
        overrun.append((lab, sum(1 for r in window if r.get("overrun")) / len(window)))
        failure.append((lab, sum(1 for r in window if r.get("outcome") == "failed") / len(window)))
    w.family(
        "coinpredict_job_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the last fully successful run of the job ended.",
        last_success,
    )
    w.family(
        "coinpredict_job_last_run_timestamp_seconds",
        "gauge",
        "Unix time at which the last run of the job ended, whatever its outcome.",
        last_run,
    )
    w.family(
        "coinpredict_job_last_duration_seconds",
        "gauge",
        "Wall time of the last run of the job.",
        last_duration,
    )
    w.family(
        "coinpredict_job_last_outcome",
        "gauge",
        "Outcome of the last run of the job (one-hot over ok, partial, failed).",
        last_outcome,
    )
    w.family(
        "coinpredict_job_runs_total",
        "counter",
        "Runs of the job by outcome since metrics were first written.",
        runs_total,
    )
    w.family(
        "coinpredict_job_duration_p50_seconds",
        "gauge",
        f"Median wall time over the last {RECENT} runs of the job.",
        p50,
    )
    w.family(
        "coinpredict_job_duration_p95_seconds",
        "gauge",
        f"95th percentile wall time over the last {RECENT} runs of the job.",
        p95,
    )
    w.family(
        "coinpredict_job_overrun_ratio",
        "gauge",
        f"Share of the last {RECENT} runs of the job that overran their time budget.",
        overrun,
    )
    w.family(
        "coinpredict_job_failure_ratio",
        "gauge",
        f"Share of the last {RECENT} runs of the job that failed.",
        failure,
    )
    if evaluation is not None:
        ev = evaluation
        w.family(
            "coinpredict_health_status",
            "gauge",
            "Exit code of status: 0 ok, 1 stale or degraded, 2 hard_stale or corrupt, 3 unknown.",
            [({}, int(ev.exit_code))],
        )
        w.family(
            "coinpredict_influxdb_up",
            "gauge",
            "1 if InfluxDB answered the last evaluation, else 0.",
            [({}, int(ev.store_error is None))],
        )
        w.family(
            "coinpredict_evaluation_timestamp_seconds",
            "gauge",
            "Unix time of the freshness evaluation these series metrics come from.",
            [({}, ev.now_ms / 1000)],
        )
        fresh = []
        ages = []
        degraded = []
        for h in ev.series:
            base = {
                "exchange": h.series.exchange,
                "symbol": h.series.symbol,
                "timeframe": h.series.timeframe.code,
            }
            kinds = [("data", h.data)]
            if h.served is not None:
                kinds.append(("prediction", h.served))
                degraded.append((base, int(h.degraded)))
            for kind, verdict in kinds:
                fresh += [
                    ({**base, "kind": kind, "state": s}, int(verdict.freshness == s))
                    for s in STATES
                ]
                if verdict.age_ms is not None:
                    ages.append(({**base, "kind": kind}, verdict.age_ms / 1000))
        w.family(
            "coinpredict_series_freshness",
            "gauge",
            "Freshness of a series' data or prediction (one-hot over fresh, stale, hard_stale, "
            "corrupt, unknown).",
            fresh,
        )
        w.family(
            "coinpredict_series_age_seconds",
            "gauge",
            "Age of a series' data (now - close of the latest candle) or prediction (now - close "
            "of its last closed candle).",
            ages,
        )
        w.family(
            "coinpredict_series_degraded",
            "gauge",
            "1 if the latest predict run of the series failed (last good forecast served).",
            degraded,
        )
    return w.text()


def write_textfile(
    settings: Settings,
    clock: Clock,
    evaluation: Evaluation | None = None,
    *,
    evaluate: bool = True,
    histories: dict[str, list[dict[str, Any]]] | None = None,
) -> Path | None:
    """Write ``coinpredict.prom`` atomically into ``settings.effective_metrics_dir``.

    ``evaluation``: the freshness evaluation the caller already has (status, monitor, export);
    None with ``evaluate`` evaluates now (a few InfluxDB queries, no exchange); with
    ``evaluate=False`` only the job metrics are written. Returns the path, or None when the file
    could not be written (logged, never raised). ``histories``: the run records the caller has
    read already (else they are read here).
    """
    try:
        if evaluation is None and evaluate:
            from coinpredict.health.collect import evaluate as run_evaluation

            evaluation = run_evaluation(settings, clock, check_exports=False)
        if histories is None:
            histories = job_histories(settings.state_dir)
        with job_locks(settings.state_dir / "locks", ["metrics"], wait_ms=5000, job="metrics"):
            totals = _update_counters(settings.state_dir / COUNTERS, histories)
            directory = settings.effective_metrics_dir
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / FILENAME
            text = redact(render(evaluation, histories, totals, clock.now_ms()))
            atomic.write_text(path, text)
        return path
    except (CoinpredictError, OSError) as exc:
        log.warning("metrics textfile not written: %s", exc)
        return None
