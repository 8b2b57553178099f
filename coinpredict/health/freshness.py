"""Freshness: pure functions of (facts, policy, ``now_ms``). No I/O, no clock of its own.

The freshness rules. For data, age = now - close time of the latest stored candle; for a prediction,
age = now - close time of its ``last_closed_candle``. With ``limit`` = the length of the candle
that follows (the timeframe; the actual next month for 1M) + grace:

- ``fresh``      iff age <  limit
- ``stale``      iff limit <= age < hard limit           (served, with a warning)
- ``hard_stale`` iff age >= hard limit                    (blocked)
- ``corrupt``    unreadable or invalid artifact or data   (blocked)
- ``unknown``    could not be evaluated (InfluxDB unreachable or the read failed)

No stored candle at all is ``hard_stale`` with reason "no data"; no forecast at all is
``hard_stale`` with reason "no forecast yet". ``degraded`` is a separate flag: the latest predict
run of the series failed, so the forecast served is the last good one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coinpredict.base.config import TimeframePolicy
from coinpredict.base.errors import HealthCode
from coinpredict.base.series import Series
from coinpredict.base.timeframes import Timeframe, iso
from coinpredict.local.state import IngestState, PredictState
from coinpredict.store.latest import CandleRow
from coinpredict.store.predictions import StoredForecast

FRESH = "fresh"
STALE = "stale"
HARD_STALE = "hard_stale"
CORRUPT = "corrupt"
UNKNOWN = "unknown"
STATES = (FRESH, STALE, HARD_STALE, CORRUPT, UNKNOWN)
BLOCKED = frozenset({HARD_STALE, CORRUPT, UNKNOWN})

# Reason codes: what the public files carry instead of the (ops-only) reason text, each with a
# short fixed text (docs/health.md lists them).
REASON_TEXT = {
    "too_old": "older than expected",
    "no_data": "no candles stored yet",
    "no_forecast": "no forecast yet",
    "in_future": "timestamp in the future",
    "invalid_data": "stored candles are invalid",
    "invalid_forecast": "stored forecast is invalid",
    "state_unreadable": "internal state is unreadable",
    "export_invalid": "a published file was invalid",
    "data_corrupt": "the candle data is invalid",
    "read_failed": "could not be read",
    "predict_failed": "the latest forecast run failed; serving the last good forecast",
}

# A candle or forecast whose close time is this far after "now" cannot be right (only closed
# candles are ever written); closer than this is clock skew and counts as age 0.
FUTURE_TOLERANCE_MS = 60_000


def fmt_duration(ms: int | None) -> str:
    """``7380000`` -> ``2h 3m``: two most significant units, for messages."""
    if ms is None:
        return "-"
    sign = "-" if ms < 0 else ""
    s = abs(int(ms)) // 1000
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
    return sign + " ".join(parts[:2])


@dataclass(frozen=True)
class Verdict:
    """The freshness of one thing (data or prediction) of one series at ``now``."""

    freshness: str
    at_ms: int | None = None  # the evaluated timestamp: open time of the latest candle used
    age_ms: int | None = None  # now - close time of that candle
    limit_ms: int | None = None  # fresh below this age
    hard_ms: int | None = None  # hard_stale at or above this age
    reason: str | None = None  # ops text (status --json, logs); never published
    code: str | None = None  # the public reason code (a key of REASON_TEXT); None when fresh

    @property
    def blocked(self) -> bool:
        return self.freshness in BLOCKED

    @property
    def overdue_ms(self) -> int:
        """How long it has been stale (0 when fresh or unknown)."""
        if self.age_ms is None or self.limit_ms is None:
            return 0
        return max(0, self.age_ms - self.limit_ms)


def fresh_limit_ms(tf: Timeframe, close_ms: int, grace_ms: int) -> int:
    """Age below which a candle that closed at ``close_ms`` is still the newest to expect."""
    return tf.add(close_ms, 1) - close_ms + grace_ms


def classify(age_ms: int, limit_ms: int, hard_ms: int) -> str:
    """Strict comparisons: fresh iff age < limit; hard_stale iff age >= hard."""
    if age_ms >= hard_ms:
        return HARD_STALE
    if age_ms < limit_ms:
        return FRESH
    return STALE


def _aged(
    what: str,
    tf: Timeframe,
    open_ms: int,
    grace_ms: int,
    hard_ms: int,
    now_ms: int,
) -> Verdict:
    close = tf.close_time(open_ms)
    age = now_ms - close
    if age < -FUTURE_TOLERANCE_MS:
        return Verdict(
            CORRUPT,
            open_ms,
            age,
            reason=f"{what} {iso(open_ms)} closes at {iso(close)}, in the future",
            code="in_future",
        )
    age = max(age, 0)
    limit = fresh_limit_ms(tf, close, grace_ms)
    state = classify(age, limit, hard_ms)
    if state == FRESH:
        return Verdict(state, open_ms, age, limit, hard_ms)
    reason = (
        f"{what} {iso(open_ms)} is {fmt_duration(age)} old "
        f"(fresh below {fmt_duration(limit)}, hard limit {fmt_duration(hard_ms)})"
    )
    return Verdict(state, open_ms, age, limit, hard_ms, reason, "too_old")


def data_verdict(
    tf: Timeframe,
    policy: TimeframePolicy,
    latest_open: int | None,
    now_ms: int,
    *,
    problem: str | None = None,
    error: str | None = None,
    problem_code: str = "invalid_data",
) -> Verdict:
    """Freshness of the stored candles. ``error``: the read failed; ``problem``: invalid data."""
    if error is not None:
        return Verdict(UNKNOWN, latest_open, reason=error, code="read_failed")
    if problem is not None:
        return Verdict(CORRUPT, latest_open, reason=problem, code=problem_code)
    if latest_open is None:
        return Verdict(HARD_STALE, None, None, None, policy.data_hard_ms, "no data", "no_data")
    return _aged("latest candle", tf, latest_open, policy.grace_ms, policy.data_hard_ms, now_ms)


def prediction_verdict(
    tf: Timeframe,
    policy: TimeframePolicy,
    last_closed: int | None,
    now_ms: int,
    *,
    problem: str | None = None,
    error: str | None = None,
    problem_code: str = "invalid_forecast",
) -> Verdict:
    """Freshness of the served forecast: as old as the last candle it used."""
    hard = policy.prediction_hard_ms
    if hard is None:
        raise ValueError(f"{tf.code} is never a prediction target")
    if error is not None:
        return Verdict(UNKNOWN, last_closed, reason=error, code="read_failed")
    if problem is not None:
        return Verdict(CORRUPT, last_closed, reason=problem, code=problem_code)
    if last_closed is None:
        return Verdict(HARD_STALE, None, None, None, hard, "no forecast yet", "no_forecast")
    return _aged("forecast from candle", tf, last_closed, policy.grace_ms, hard, now_ms)


# --- validity ---------------------------------------------------------------------------------


def _finite_positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def candle_problem(tf: Timeframe, row: Sequence[Any]) -> str | None:
    """Why a stored candle is impossible, or None."""
    if len(row) != 6 or any(v is None for v in row):
        return "latest candle has missing fields"
    ts, o, h, lo, c, v = row
    when = iso(int(ts))
    if not tf.is_aligned(int(ts)):
        return f"latest candle {when} is not on the {tf.code} grid"
    if not all(_finite_positive(x) for x in (o, h, lo, c)):
        return f"latest candle {when} has a non-positive or non-finite price"
    if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
        return f"latest candle {when} has an invalid volume {v!r}"
    if not (lo <= min(o, c) and max(o, c) <= h):
        return f"latest candle {when} has impossible values (low/high do not bracket open/close)"
    return None


def forecast_problem(tf: Timeframe, fc: StoredForecast) -> str | None:
    """Why a stored forecast must not be served, or None. Names the first bad step."""
    n = len(fc.timestamps)
    if n == 0:
        return "forecast has no steps"
    lists = (fc.close, fc.lower, fc.upper, fc.lower_95, fc.upper_95)
    if any(len(values) != n for values in lists):
        return "forecast steps have missing fields"
    if not fc.model_name or not fc.model_version:
        return "forecast has no model name/version"
    if not (isinstance(fc.level, int | float) and 0 < fc.level < 1):
        return f"forecast interval level {fc.level!r} is not in (0, 1)"
    expected = tf.close_time(fc.last_closed_ms)
    if fc.origin_ms != expected:
        return (
            f"forecast origin {iso(fc.origin_ms)} is not the close of its last candle "
            f"{iso(fc.last_closed_ms)}"
        )
    for i in range(n):
        step = f"forecast step {i + 1}"
        if fc.timestamps[i] != expected:
            return f"{step} is at {iso(fc.timestamps[i])}, expected {iso(expected)}"
        expected = tf.add(expected, 1)
        c, lo, up = fc.close[i], fc.lower[i], fc.upper[i]
        lo95, up95 = fc.lower_95[i], fc.upper_95[i]
        if not all(_finite_positive(x) for x in (c, lo, up, lo95, up95)):
            return f"{step} has a non-positive or non-finite value"
        if not lo <= c <= up:
            return f"{step}: lower <= close <= upper does not hold ({lo} / {c} / {up})"
        if not (lo95 <= lo and up <= up95):
            return f"{step}: the 95% interval does not contain the nominal interval"
    return None


# --- one series ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesFacts:
    """Everything read for one series; ``*_error`` = read failed, ``*_problem`` = invalid."""

    series: Series
    latest: CandleRow | None = None
    data_error: str | None = None
    data_problem: str | None = None
    forecast: StoredForecast | None = None
    forecast_error: str | None = None
    forecast_problem: str | None = None
    predict_state: PredictState | None = None
    predict_problem: str | None = None
    ingest_state: IngestState | None = None
    ingest_problem: str | None = None
    export_problems: tuple[str, ...] = ()  # exported files of this series that are invalid
    history: tuple[CandleRow, ...] | None = None  # for export only


@dataclass(frozen=True)
class SeriesHealth:
    series: Series
    data: Verdict
    prediction: Verdict | None  # None: 1m, never a prediction target
    degraded: bool = False
    degraded_reason: str | None = None
    ingest: dict[str, Any] | None = None
    predict: dict[str, Any] | None = None
    forecast: StoredForecast | None = field(default=None, compare=False, repr=False)

    @property
    def served(self) -> Verdict | None:
        """The verdict a prediction file publishes: corrupt data blocks the forecast too."""
        if self.prediction is None:
            return None
        if self.data.freshness == CORRUPT and not self.prediction.blocked:
            return Verdict(
                CORRUPT,
                self.prediction.at_ms,
                self.prediction.age_ms,
                self.prediction.limit_ms,
                self.prediction.hard_ms,
                reason=f"data corrupt: {self.data.reason}",
                code="data_corrupt",
            )
        return self.prediction

    @property
    def blocked(self) -> bool:
        served = self.served
        return served is not None and served.blocked

    @property
    def states(self) -> list[str]:
        served = self.served
        return [self.data.freshness] + ([served.freshness] if served is not None else [])


def _iso_or_none(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None


def _state_summary(
    st: IngestState | PredictState | None, problem: str | None
) -> dict[str, Any] | None:
    """A state file's summary in ``status``: corrupt with the problem, absent, or its fields."""
    if problem is not None:
        return {"status": "corrupt", "error": problem}
    if st is None:
        return None
    if isinstance(st, IngestState):
        at, cursor = _iso_or_none(st.updated_at), _iso_or_none(st.cursor)
        return {"status": st.status, "error": st.last_error, "at": at, "cursor": cursor}
    return {"status": st.status, "error": st.reason, "at": _iso_or_none(st.at)}


def _first_problem(*found: tuple[str | None, str]) -> tuple[str | None, str]:
    """The first (problem text, its code) that is set; (None, "") when none is."""
    return next(((text, code) for text, code in found if text is not None), (None, ""))


def _data_of(facts: SeriesFacts, policy: TimeframePolicy, now_ms: int) -> Verdict:
    tf = facts.series.timeframe
    latest_open = int(facts.latest[0]) if facts.latest is not None else None
    history_problems = [p for p in facts.export_problems if p.startswith("history_")]
    problem, code = _first_problem(
        (facts.data_problem, "invalid_data"),
        (facts.ingest_problem, "state_unreadable"),
        (candle_problem(tf, facts.latest) if facts.latest is not None else None, "invalid_data"),
        (history_problems[0] if history_problems else None, "export_invalid"),
    )
    return data_verdict(
        tf,
        policy,
        latest_open,
        now_ms,
        problem=problem,
        error=facts.data_error,
        problem_code=code or "invalid_data",
    )


def _prediction_of(facts: SeriesFacts, policy: TimeframePolicy, now_ms: int) -> Verdict:
    tf = facts.series.timeframe
    fc = facts.forecast
    file_problems = [p for p in facts.export_problems if p.startswith("prediction_")]
    problem, code = _first_problem(
        (facts.forecast_problem, "invalid_forecast"), (facts.predict_problem, "state_unreadable")
    )
    if problem is None and fc is not None:
        problem, code = forecast_problem(tf, fc), "invalid_forecast"
    if problem is None and file_problems:
        problem, code = file_problems[0], "export_invalid"
    return prediction_verdict(
        tf,
        policy,
        fc.last_closed_ms if fc is not None else None,
        now_ms,
        problem=problem,
        error=facts.forecast_error,
        problem_code=code or "invalid_forecast",
    )


def evaluate_series(facts: SeriesFacts, policy: TimeframePolicy, now_ms: int) -> SeriesHealth:
    """The pure heart of status, monitor and export."""
    s = facts.series
    prediction = None
    degraded = False
    degraded_reason = None
    if policy.prediction_hard_ms is not None and s.timeframe.code != "1m":
        prediction = _prediction_of(facts, policy, now_ms)
        st = facts.predict_state
        if st is not None and st.degraded:
            degraded = True
            degraded_reason = st.reason or "the latest predict run failed"
    return SeriesHealth(
        series=s,
        data=_data_of(facts, policy, now_ms),
        prediction=prediction,
        degraded=degraded,
        degraded_reason=degraded_reason,
        ingest=_state_summary(facts.ingest_state, facts.ingest_problem),
        predict=_state_summary(facts.predict_state, facts.predict_problem)
        if prediction is not None
        else None,
        forecast=facts.forecast if prediction is not None else None,
    )


# --- the whole evaluation ---------------------------------------------------------------------


@dataclass
class Evaluation:
    now_ms: int
    series: list[SeriesHealth]
    store_error: str | None = None  # InfluxDB unreachable: data/prediction are unknown
    problems: list[str] = field(default_factory=list)  # invalid files not tied to a series

    @property
    def exit_code(self) -> int:
        return health_code(self)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for h in self.series:
            for state in h.states:
                out[state] += 1
        out["degraded"] = sum(1 for h in self.series if h.degraded)
        return out


def health_code(ev: Evaluation) -> int:
    """0 all fresh, none degraded; 1 stale or degraded; 2 hard_stale or corrupt; 3 unknown.

    Order of precedence: 2 > 3 > 1 > 0 (a blocked series is the most urgent fact, even while
    InfluxDB is unreachable).
    """
    states = {s for h in ev.series for s in h.states}
    if ev.problems or states & {HARD_STALE, CORRUPT}:
        return HealthCode.CRITICAL
    if ev.store_error or UNKNOWN in states:
        return HealthCode.UNKNOWN
    if STALE in states or any(h.degraded for h in ev.series):
        return HealthCode.WARNING
    return HealthCode.OK


def verdict_json(v: Verdict, *, key: str) -> dict[str, Any]:
    return {
        "freshness": v.freshness,
        key: iso(v.at_ms) if v.at_ms is not None else None,
        "age_seconds": round(v.age_ms / 1000, 3) if v.age_ms is not None else None,
        "fresh_below_seconds": v.limit_ms // 1000 if v.limit_ms is not None else None,
        "hard_limit_seconds": v.hard_ms // 1000 if v.hard_ms is not None else None,
        "reason": v.reason,
        "code": v.code,
    }


def series_json(h: SeriesHealth) -> dict[str, Any]:
    """One entry of ``status --json`` / ``status.json``: the status fields plus reasons."""
    out: dict[str, Any] = {
        "symbol": h.series.symbol,
        "timeframe": h.series.timeframe.code,
        "exchange": h.series.exchange,
        "data": verdict_json(h.data, key="last_candle"),
        "prediction": None,
        "ingest": h.ingest,
        "predict": h.predict,
    }
    if h.prediction is not None:
        served = h.served or h.prediction
        pred = verdict_json(served, key="last_closed_candle")
        pred["degraded"] = h.degraded
        pred["degraded_reason"] = h.degraded_reason
        out["prediction"] = pred
    return out
