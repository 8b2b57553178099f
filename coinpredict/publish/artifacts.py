"""The exported documents: names, builders and validators (docs/health.md describes each field).

Public text only: the documents carry states, ages, thresholds, reason codes and the short fixed
texts of ``health.freshness.REASON_TEXT``; never a raw error message, host, path or credential
(those stay in the ops outputs: ``status --json``, run records, logs).

Builders are pure (a :class:`SeriesHealth` and ``now_ms`` in, a JSON-ready dict out). Validators
return a list of problems, each naming the field (``predictions[3].close: ...``), and are shared by
``status`` (an invalid exported file is ``corrupt``) and ``check``.
"""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any

from coinpredict.base.redact import redact
from coinpredict.base.timeframes import iso
from coinpredict.health.exported import SCHEMA_VERSION
from coinpredict.health.freshness import (
    BLOCKED,
    CORRUPT,
    FRESH,
    REASON_TEXT,
    STALE,
    CandleRow,
    Evaluation,
    SeriesHealth,
    Verdict,
    fmt_duration,
    series_json,
    verdict_json,
)


def _age_s(v: Verdict) -> float | None:
    return round(v.age_ms / 1000, 3) if v.age_ms is not None else None


# --- builders -------------------------------------------------------------------------------


def public_text(code: str | None) -> str | None:
    """The short fixed text of a reason code."""
    return None if code is None else REASON_TEXT.get(code, code)


def prediction_warning(h: SeriesHealth) -> str | None:
    """Fixed texts only: the state, what it means and why (by reason code)."""
    served = h.served
    if served is None:
        return None
    parts = []
    if served.freshness == STALE:
        parts.append(f"stale: {public_text(served.code)}")
    elif served.freshness in BLOCKED:
        parts.append(
            f"blocked ({served.freshness}): {public_text(served.code)}; no predictions are served"
        )
    if h.degraded:
        parts.append(f"degraded: {public_text('predict_failed')}")
    return "; ".join(parts) or None


def public_verdict(v: Verdict, *, key: str) -> dict[str, Any]:
    """A verdict as the public files show it: ``status --json``'s fields without the ops text
    (``reason``), with the code's fixed text."""
    out = {k: x for k, x in verdict_json(v, key=key).items() if k != "reason"}
    out["text"] = public_text(v.code)
    return out


def _public_series(h: SeriesHealth) -> dict[str, Any]:
    """One series of ``status.json``: identity and verdicts only (no ingest/predict errors)."""
    out = {k: x for k, x in series_json(h).items() if k in ("symbol", "timeframe", "exchange")}
    out["data"] = public_verdict(h.data, key="last_candle")
    out["prediction"] = None
    served = h.served
    if served is not None:
        pred = public_verdict(served, key="last_closed_candle")
        pred["degraded"] = h.degraded
        pred["degraded_code"] = "predict_failed" if h.degraded else None
        out["prediction"] = pred
    return out


PUBLIC_JOB_FIELDS = (
    "last_outcome",
    "last_end",
    "last_success",
    "runs",
    "duration_p50_s",
    "duration_p95_s",
    "overrun_rate",
    "failure_rate",
    "partial_rate",
)


def public_status(ev: Evaluation, health: str, jobs: dict[str, Any]) -> dict[str, Any]:
    """``status.json``: the public view of ``status --json`` (states, ages, thresholds, reason
    codes, fixed texts, job outcomes and timings; no messages)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(ev.now_ms),
        "health": health,
        "exit_code": int(ev.exit_code),
        "influxdb": {"reachable": ev.store_error is None},
        "counts": ev.counts(),
        "invalid_files": len(ev.problems),
        "series": [_public_series(h) for h in ev.series],
        "jobs": {job: {k: stats.get(k) for k in PUBLIC_JOB_FIELDS} for job, stats in jobs.items()},
    }


def prediction_doc(h: SeriesHealth, now_ms: int, *, interval_level: float) -> dict[str, Any]:
    served = h.served
    if served is None:
        raise ValueError(f"{h.series}: 1m is never a prediction target")
    fc = h.forecast
    predictions: list[dict[str, Any]] = []
    if fc is not None and not served.blocked:
        predictions = [
            {
                "timestamp": iso(fc.timestamps[i]),
                "close": fc.close[i],
                "lower": fc.lower[i],
                "upper": fc.upper[i],
                "lower_95": fc.lower_95[i],
                "upper_95": fc.upper_95[i],
            }
            for i in range(len(fc.timestamps))
        ]
    return {
        "schema_version": SCHEMA_VERSION,
        "symbol": h.series.symbol,
        "timeframe": h.series.timeframe.code,
        "generated_at": iso(now_ms),
        "last_closed_candle": iso(fc.last_closed_ms) if fc is not None else None,
        "freshness": served.freshness,
        "age_seconds": _age_s(served),
        "degraded": h.degraded,
        "warning": prediction_warning(h),
        "reason": served.code if served.freshness != FRESH else None,
        "model": {
            "name": fc.model_name if fc is not None else None,
            "version": fc.model_version if fc is not None else None,
        },
        "interval": fc.level if fc is not None else interval_level,
        "interval_95": 0.95,
        "issued_at": iso(fc.issued_at_ms) if fc is not None else None,
        "predictions": predictions,
    }


def history_doc(
    h: SeriesHealth, candles: tuple[CandleRow, ...] | list[CandleRow], now_ms: int
) -> dict[str, Any]:
    data = h.data
    warning = None
    blocked = data.freshness == CORRUPT
    if data.freshness != FRESH:
        warning = f"{data.freshness}: {public_text(data.code)}"
    return {
        "schema_version": SCHEMA_VERSION,
        "symbol": h.series.symbol,
        "timeframe": h.series.timeframe.code,
        "generated_at": iso(now_ms),
        "last_candle": iso(data.at_ms) if data.at_ms is not None else None,
        "freshness": data.freshness,
        "age_seconds": _age_s(data),
        "warning": warning,
        "reason": data.code if data.freshness != FRESH else None,
        "candles": []
        if blocked
        else [
            {
                "timestamp": iso(int(r[0])),
                "open": r[1],
                "high": r[2],
                "low": r[3],
                "close": r[4],
                "volume": r[5],
            }
            for r in candles
        ],
    }


@functools.lru_cache(maxsize=4096)  # series of one timeframe share their open times
def _iso_fast(ts_ms: int) -> str:
    if ts_ms % 1000:
        return iso(ts_ms)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ms // 1000))


def history_bytes(
    h: SeriesHealth, candles: tuple[CandleRow, ...] | list[CandleRow], now_ms: int
) -> bytes:
    """``dumps(history_doc(...), compact=True)``, byte for byte, several times faster.

    Candle values come from InfluxDB as finite floats, whose ``repr`` is what ``json`` writes.
    """
    doc = history_doc(h, (), now_ms)
    text = redact(json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False))
    if h.data.freshness == CORRUPT or not candles:
        return (text + "\n").encode("utf-8")
    body = candles_json(tuple(candles)) if text.endswith('"candles":[]}') else None
    if body is None:
        return dumps(history_doc(h, candles, now_ms), compact=True)
    return (text[:-2] + body + "]}\n").encode("utf-8")


@functools.lru_cache(maxsize=128)  # ~60 KB per 500-candle series
def candles_json(candles: tuple[CandleRow, ...]) -> str | None:
    """The candle objects of a history file, comma-joined (None: a value is not a finite
    float, so the slow careful path must write them). Cached by content: ``coinpredict cycle``
    formats each series' candles while it waits on the exchange, export then reuses them."""
    if not all(isinstance(x, float) and math.isfinite(x) for r in candles for x in r[1:]):
        return None
    return ",".join(
        f'{{"timestamp":"{_iso_fast(int(t))}","open":{o!r},"high":{hi!r},"low":{lo!r},'
        f'"close":{c!r},"volume":{v!r}}}'
        for t, o, hi, lo, c, v in candles
    )


def dumps(doc: Any, *, compact: bool = False) -> bytes:
    """A published document as bytes; credentials masked (``base.redact``) on top of the
    public-text rule (documents carry codes and fixed texts only)."""
    if compact:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    else:
        text = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False)
    return (redact(text) + "\n").encode("utf-8")


# --- validators -----------------------------------------------------------------------------


def describe_age(v: Verdict) -> str:
    return fmt_duration(v.age_ms) if v.age_ms is not None else "-"
