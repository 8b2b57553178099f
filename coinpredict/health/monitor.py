"""``coinpredict monitor``: one alert per state transition, delivered at least once.

Each run evaluates like ``status``, compares with the previous evaluation kept in
STATE_DIR/monitor/last.json and emits exactly one alert per transition of a series' data or
prediction freshness (``stale``, ``hard_stale``, ``corrupt``, ``unknown``, back to ``fresh`` =
``recovered``), per change of ``degraded`` (``degraded`` / ``degraded_cleared``), once when a
series has been stale longer than ``stale_escalate_ms`` (``stale_escalated``), and once when
InfluxDB becomes unreachable or reachable again (``influxdb_unreachable`` / ``influxdb_recovered``;
while it is unreachable the per-series states are kept, not flipped to unknown).

First run (no previous evaluation): the baseline is recorded and only non-fresh series alert.

Every alert is a log line; with COINPREDICT_ALERT_WEBHOOK each is also POSTed as JSON. The
webhook URL is a secret (its path is often the token): it is never logged or stored, errors name
only "webhook"; userinfo in it is sent as HTTP Basic auth. Payloads and alert texts pass through
the redactor (``base.redact``) before they are queued, logged or sent. The new
alerts are queued in STATE_DIR/monitor/pending.jsonl *before* the new state is saved, and removed
only once delivered, so a failing webhook never loses a transition: the next run retries them
(oldest first). The queue keeps at most ``MAX_PENDING`` alerts.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coinpredict.base import redact
from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, CoinpredictError
from coinpredict.base.outcomes import RunSummary
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.health.collect import evaluate
from coinpredict.health.freshness import (
    CORRUPT,
    FRESH,
    HARD_STALE,
    STALE,
    UNKNOWN,
    Evaluation,
    SeriesHealth,
    Verdict,
    fmt_duration,
)
from coinpredict.local import atomic
from coinpredict.local.state import read_jsonl

log = logging.getLogger("coinpredict.monitor")

MAX_PENDING = 1000
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF_S = 0.5
SEVERITY = {
    STALE: "warning",
    HARD_STALE: "critical",
    CORRUPT: "critical",
    UNKNOWN: "warning",
    "recovered": "ok",
    "degraded": "warning",
    "degraded_cleared": "ok",
    "stale_escalated": "critical",
    "influxdb_unreachable": "critical",
    "influxdb_recovered": "ok",
}


def state_path(state_dir: Path) -> Path:
    return state_dir / "monitor" / "last.json"


def pending_path(state_dir: Path) -> Path:
    return state_dir / "monitor" / "pending.jsonl"


def series_key(s: Series) -> str:
    return f"{s.exchange}|{s.symbol}|{s.timeframe.code}"


@dataclass(frozen=True)
class Alert:
    event: str  # stale | hard_stale | corrupt | unknown | recovered | degraded | ...
    kind: str  # data | prediction | degraded | influxdb
    series: Series | None
    previous: str | None
    current: str
    at_ms: int
    reason: str | None = None
    age_ms: int | None = None

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.event, "warning")

    @property
    def id(self) -> str:
        where = series_key(self.series) if self.series else "-"
        return f"{where}|{self.kind}|{self.event}|{self.at_ms}"

    def text(self) -> str:
        where = self.series.label if self.series else "InfluxDB"
        change = f"{self.previous or 'new'} -> {self.current}"
        age = f", age {fmt_duration(self.age_ms)}" if self.age_ms is not None else ""
        why = f": {self.reason}" if self.reason else ""
        return redact.redact(
            f"{self.severity}: {where} {self.kind} {self.event} ({change}{age}){why}"
        )

    def payload(self) -> dict[str, Any]:
        s = self.series
        return {
            "id": self.id,
            "source": "coinpredict",
            "event": self.event,
            "severity": self.severity,
            "kind": self.kind,
            "exchange": s.exchange if s else None,
            "symbol": s.symbol if s else None,
            "timeframe": s.timeframe.code if s else None,
            "from": self.previous,
            "to": self.current,
            "at": iso(self.at_ms),
            "age_seconds": round(self.age_ms / 1000, 3) if self.age_ms is not None else None,
            "reason": redact.redact(self.reason) if self.reason else None,
            "text": self.text(),
        }


def _verdict_alert(kind: str, s: Series, before: str | None, v: Verdict, now_ms: int) -> Alert:
    event = "recovered" if v.freshness == FRESH else v.freshness
    return Alert(event, kind, s, before, v.freshness, now_ms, v.reason, v.age_ms)


def transitions(
    previous: dict[str, Any] | None, ev: Evaluation, escalate_ms: int
) -> tuple[list[Alert], dict[str, Any]]:
    """Pure: the alerts between ``previous`` and ``ev``, and the state to keep for next time."""
    now = ev.now_ms
    prev_series: dict[str, Any] = dict((previous or {}).get("series", {}))
    new_series = dict(prev_series)  # series outside this (narrowed) run keep their state
    store_down = ev.store_error is not None
    alerts = _store_alerts((previous or {}).get("influxdb", "up"), ev.store_error, now)
    for h in ev.series:
        key = series_key(h.series)
        new_series[key] = _series_transitions(
            h, prev_series.get(key) or {}, store_down, escalate_ms, now, alerts
        )
    state = {
        "version": 1,
        "evaluated_at": now,
        "influxdb": "down" if store_down else "up",
        "series": new_series,
    }
    return alerts, state


def _store_alerts(prev_store: str, store_error: str | None, now: int) -> list[Alert]:
    if store_error is not None and prev_store != "down":
        return [
            Alert("influxdb_unreachable", "influxdb", None, prev_store, "down", now, store_error)
        ]
    if store_error is None and prev_store == "down":
        return [Alert("influxdb_recovered", "influxdb", None, "down", "up", now)]
    return []


def _series_transitions(
    h: SeriesHealth,
    p: dict[str, Any],
    store_down: bool,
    escalate_ms: int,
    now: int,
    alerts: list[Alert],
) -> dict[str, Any]:
    """Append one series' alerts; return the state to keep for it (``p``: the previous one)."""
    escalated = set(p.get("escalated", []))
    entry: dict[str, Any] = {"data": None, "prediction": None, "degraded": None}
    for kind, verdict in (("data", h.data), ("prediction", h.served)):
        if verdict is None:
            continue
        before = p.get(kind)
        cur = verdict.freshness
        if store_down and cur == UNKNOWN:
            entry[kind] = before  # the InfluxDB alert covers it; compare later with before
            continue
        entry[kind] = cur
        if cur != before and not (before is None and cur == FRESH):
            alerts.append(_verdict_alert(kind, h.series, before, verdict, now))
        if cur == FRESH:
            escalated.discard(kind)
        elif cur == STALE and kind not in escalated and verdict.overdue_ms >= escalate_ms:
            escalated.add(kind)
            alerts.append(_escalation_alert(kind, h.series, verdict, escalate_ms, now))
    if h.served is not None:
        entry["degraded"] = h.degraded
        alerts.extend(_degraded_alerts(h, p.get("degraded"), now))
    entry["escalated"] = sorted(escalated)
    return entry


def _escalation_alert(kind: str, s: Series, v: Verdict, escalate_ms: int, now: int) -> Alert:
    reason = (
        f"stale for {fmt_duration(v.overdue_ms)} (escalation after "
        f"{fmt_duration(escalate_ms)}): {v.reason}"
    )
    return Alert("stale_escalated", kind, s, v.freshness, v.freshness, now, reason, v.age_ms)


def _degraded_alerts(h: SeriesHealth, before: bool | None, now: int) -> list[Alert]:
    if h.degraded and before is not True:
        was = "false" if before is False else None
        return [Alert("degraded", "degraded", h.series, was, "true", now, h.degraded_reason)]
    if not h.degraded and before is True:
        return [Alert("degraded_cleared", "degraded", h.series, "true", "false", now)]
    return []


# --- delivery ---------------------------------------------------------------------------------


class WebhookError(CoinpredictError):
    """The alert webhook did not accept a POST."""


def post_json(url: str, payload: dict[str, Any], timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
    data = redact.redact(json.dumps(payload, allow_nan=False)).encode("utf-8")
    bare, user, password = redact.split_userinfo(url)
    headers = {"Content-Type": "application/json", "User-Agent": "coinpredict-monitor"}
    if user is not None or password is not None:
        raw = f"{user or ''}:{password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    req = urllib.request.Request(bare, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (operator URL)
            resp.read()
            if not 200 <= resp.status < 300:
                raise WebhookError(f"webhook answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"webhook answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        text = reason if isinstance(reason, str) else getattr(reason, "strerror", None)
        raise WebhookError(f"webhook unreachable: {redact.redact(text or str(reason))}") from exc


Poster = Callable[[str, dict[str, Any]], None]


def deliver(
    url: str,
    queue: Sequence[dict[str, Any]],
    *,
    post: Poster = post_json,
    attempts: int = WEBHOOK_ATTEMPTS,
    backoff_s: float | None = None,
) -> tuple[int, list[dict[str, Any]], str | None]:
    """POST in order; stop at the first alert that fails every attempt (keep it and the rest)."""
    if backoff_s is None:
        backoff_s = WEBHOOK_BACKOFF_S
    for i, payload in enumerate(queue):
        error: str | None = None
        for attempt in range(attempts):
            try:
                post(url, payload)
                error = None
                break
            except WebhookError as exc:
                error = str(exc)
                if attempt + 1 < attempts:
                    time.sleep(backoff_s * (2**attempt))
        if error is not None:
            return i, list(queue[i:]), error
    return len(queue), [], None


def _save_pending(path: Path, queue: list[dict[str, Any]]) -> None:
    if len(queue) > MAX_PENDING:
        log.warning(
            "dropping %d undelivered alerts (queue limit %d)", len(queue) - MAX_PENDING, MAX_PENDING
        )
        queue = queue[-MAX_PENDING:]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "".join(json.dumps(p, allow_nan=False) + "\n" for p in queue))


def load_previous(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(state_path(state_dir))
    except FileNotFoundError:
        return None
    except ArtifactError as exc:
        log.warning("previous monitor evaluation unreadable, starting a new baseline: %s", exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        log.warning("previous monitor evaluation invalid, starting a new baseline")
        return None
    return data


@dataclass
class MonitorResult:
    evaluation: Evaluation
    alerts: list[Alert]
    delivered: int = 0
    pending: int = 0
    webhook_error: str | None = None
    first_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.evaluation.exit_code

    def summary(self) -> RunSummary:
        extra = {
            "alerts": len(self.alerts),
            "delivered": self.delivered,
            "pending": self.pending,
            "health": int(self.evaluation.exit_code),
        }
        return RunSummary(
            outcome="partial" if self.webhook_error else "ok",
            series_ok=len(self.evaluation.series),
            message=self.webhook_error,
            extra=extra,
        )


def monitor_once(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    post: Poster = post_json,
) -> MonitorResult:
    """Evaluate, alert on transitions and deliver pending alerts (the job runner adds the lock,
    the run record and the metrics refresh)."""
    state_dir = settings.state_dir
    ev = evaluate(settings, clock, series)
    previous = load_previous(state_dir)
    alerts, new_state = transitions(previous, ev, settings.stale_escalate_ms)
    result = MonitorResult(ev, alerts, first_run=previous is None)
    for a in alerts:
        log.warning("alert %s", a.text())
    if not settings.alert_webhook:
        _save_state(state_dir, new_state)
        return result
    qpath = pending_path(state_dir)
    queue = read_jsonl(qpath) + [a.payload() for a in alerts]
    if alerts:
        _save_pending(qpath, queue)  # queued before the state moves on
    _save_state(state_dir, new_state)
    if queue:
        sent, rest, error = deliver(settings.alert_webhook, queue, post=post)
        _save_pending(qpath, rest)
        result.delivered, result.pending, result.webhook_error = sent, len(rest), error
        if error:
            log.warning("webhook: %d alert(s) kept for the next run: %s", len(rest), error)
    return result


def _save_state(state_dir: Path, new_state: dict[str, Any]) -> None:
    path = state_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, new_state)
