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
from datetime import datetime
from pathlib import Path
from typing import Any

from coinpredict.base.redact import redact
from coinpredict.base.series import Series
from coinpredict.base.symbols import file_stem
from coinpredict.base.timeframes import Timeframe, iso
from coinpredict.health.freshness import (
    BLOCKED,
    CORRUPT,
    FRESH,
    REASON_TEXT,
    STALE,
    STATES,
    CandleRow,
    Evaluation,
    SeriesHealth,
    Verdict,
    fmt_duration,
    series_json,
    verdict_json,
)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STATUS = "status.json"


def prediction_name(series: Series) -> str:
    return f"prediction_{file_stem(series.symbol)}_{series.timeframe.code}.json"


def history_name(series: Series) -> str:
    return f"history_{file_stem(series.symbol)}_{series.timeframe.code}.json"


def parse_iso_z(text: Any) -> int:
    """``2024-01-01T10:00:00Z`` -> ms. Raises ValueError unless ISO 8601 UTC with ``Z``."""
    if not isinstance(text, str) or not text.endswith("Z") or "T" not in text:
        raise ValueError(f"{text!r} is not an ISO 8601 UTC timestamp ending in Z")
    d = datetime.fromisoformat(text[:-1] + "+00:00")
    return int(round(d.timestamp() * 1000))


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


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _iso_ok(x: Any) -> bool:
    try:
        parse_iso_z(x)
    except ValueError:
        return False
    return True


def validate_prediction_doc(doc: Any, series: Series | None = None) -> list[str]:
    """Schema problems of a prediction file (empty list: valid)."""
    if not isinstance(doc, dict):
        return ["document: not a JSON object"]
    p: list[str] = []
    if doc.get("schema_version") != SCHEMA_VERSION:
        p.append(f"schema_version: {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if series is not None:
        if doc.get("symbol") != series.symbol:
            p.append(f"symbol: {doc.get('symbol')!r}, expected {series.symbol!r}")
        if doc.get("timeframe") != series.timeframe.code:
            p.append(f"timeframe: {doc.get('timeframe')!r}, expected {series.timeframe.code!r}")
    if not _iso_ok(doc.get("generated_at")):
        p.append(f"generated_at: {doc.get('generated_at')!r} is not ISO 8601 UTC with Z")
    lcc = doc.get("last_closed_candle")
    if lcc is not None and not _iso_ok(lcc):
        p.append(f"last_closed_candle: {lcc!r} is not ISO 8601 UTC with Z")
    if doc.get("freshness") not in STATES:
        p.append(f"freshness: {doc.get('freshness')!r} is not one of {', '.join(STATES)}")
    if not isinstance(doc.get("degraded"), bool):
        p.append(f"degraded: {doc.get('degraded')!r} is not a boolean")
    if doc.get("warning") is not None and not isinstance(doc.get("warning"), str):
        p.append("warning: not text or null")
    model = doc.get("model")
    if not isinstance(model, dict) or "name" not in model or "version" not in model:
        p.append("model: expected {name, version}")
    interval = doc.get("interval")
    if not (isinstance(interval, int | float) and _num(interval) and 0 < interval < 1):
        p.append(f"interval: {interval!r} is not a level in (0, 1)")
    preds = doc.get("predictions")
    if not isinstance(preds, list):
        p.append("predictions: not a list")
        return p
    if doc.get("freshness") in BLOCKED and preds:
        p.append(f"predictions: must be [] when freshness is {doc.get('freshness')}")
    if preds and lcc is None:
        p.append("last_closed_candle: null while predictions are served")
    for i, entry in enumerate(preds):
        if not isinstance(entry, dict):
            p.append(f"predictions[{i}]: not an object")
            continue
        if not _iso_ok(entry.get("timestamp")):
            p.append(f"predictions[{i}].timestamp: {entry.get('timestamp')!r} is not ISO 8601 Z")
        for key in ("close", "lower", "upper"):
            if not _num(entry.get(key)):
                p.append(f"predictions[{i}].{key}: {entry.get(key)!r} is not a finite number")
    return p


def smoke_check_predictions(doc: dict[str, Any], tf: Timeframe) -> list[str]:
    """Future values: on the grid after last_closed_candle, finite, positive, ordered bounds."""
    preds = doc.get("predictions") or []
    if not preds:
        return []
    p: list[str] = []
    try:
        expected = tf.close_time(parse_iso_z(doc.get("last_closed_candle")))
    except ValueError as exc:
        return [f"last_closed_candle: {exc}"]
    for i, e in enumerate(preds):
        try:
            ts = parse_iso_z(e.get("timestamp"))
        except (ValueError, AttributeError) as exc:
            p.append(f"predictions[{i}].timestamp: {exc}")
            break
        if ts != expected:
            what = "the next boundary after last_closed_candle" if i == 0 else "one step later"
            p.append(f"predictions[{i}].timestamp: {iso(ts)}, expected {iso(expected)} ({what})")
            break
        expected = tf.add(expected, 1)
        values = {k: e.get(k) for k in ("close", "lower", "upper", "lower_95", "upper_95")}
        for key, v in values.items():
            if v is None and key.endswith("_95"):
                continue
            if not (_num(v) and v > 0):
                p.append(f"predictions[{i}].{key}: {v!r} is not a finite positive number")
        lo, c, up = values["lower"], values["close"], values["upper"]
        if _num(lo) and _num(c) and _num(up) and not lo <= c <= up:
            p.append(f"predictions[{i}]: lower <= close <= upper does not hold ({lo}/{c}/{up})")
        lo95, up95 = values["lower_95"], values["upper_95"]
        if _num(lo95) and _num(lo) and lo95 > lo:
            p.append(f"predictions[{i}].lower_95: {lo95} is above lower {lo}")
        if _num(up95) and _num(up) and up95 < up:
            p.append(f"predictions[{i}].upper_95: {up95} is below upper {up}")
    return p


def validate_history_doc(doc: Any, series: Series | None = None, *, deep: bool = True) -> list[str]:
    """Schema problems of a history file; ``deep`` checks every candle (``check`` does)."""
    if not isinstance(doc, dict):
        return ["document: not a JSON object"]
    p: list[str] = []
    if doc.get("schema_version") != SCHEMA_VERSION:
        p.append(f"schema_version: {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if series is not None and (
        doc.get("symbol") != series.symbol or doc.get("timeframe") != series.timeframe.code
    ):
        p.append(f"symbol/timeframe: {doc.get('symbol')!r} {doc.get('timeframe')!r}")
    if doc.get("freshness") not in STATES:
        p.append(f"freshness: {doc.get('freshness')!r} is not one of {', '.join(STATES)}")
    candles = doc.get("candles")
    if not isinstance(candles, list):
        p.append("candles: not a list")
        return p
    for i, c in enumerate(candles if deep else candles[-1:]):
        if not isinstance(c, dict) or not all(
            _num(c.get(k)) for k in ("open", "high", "low", "close", "volume")
        ):
            p.append(f"candles[{i}]: missing or non-numeric fields")
            break
    return p


def read_doc(path: Path) -> tuple[Any, str | None]:
    """(document, None) or (None, problem). A missing file raises FileNotFoundError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        return None, f"{path.name}: unreadable ({exc.strerror or exc})"
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, f"{path.name}: not valid JSON ({exc})"


def file_problem(
    path: Path, kind: str, series: Series | None = None, *, deep: bool = True
) -> str | None:
    """First problem of an exported file, prefixed with its name; None if valid or missing.

    ``deep=False`` on a history file only checks its framing (what ``export`` writes begins
    with ``{"schema_version":1,`` and ends with ``]}`` + newline), which catches truncation
    without parsing megabytes on every ``status``; ``check`` parses and validates it all.
    """
    if kind == "history" and not deep:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{path.name}: unreadable ({exc.strerror or exc})"
        if not (raw.startswith(b'{"schema_version":1,') and raw.endswith(b"]}\n")):
            return f"{path.name}: truncated or not written by export"
        return None
    try:
        doc, problem = read_doc(path)
    except FileNotFoundError:
        return None
    if problem is not None:
        return problem
    if kind == "prediction":
        found = validate_prediction_doc(doc, series)
        if not found and series is not None:
            found = smoke_check_predictions(doc, series.timeframe)
    elif kind == "history":
        found = validate_history_doc(doc, series, deep=deep)
    else:
        found = [] if isinstance(doc, dict) else ["document: not a JSON object"]
    return f"{path.name}: {found[0]}" if found else None


def describe_age(v: Verdict) -> str:
    return fmt_duration(v.age_ms) if v.age_ms is not None else "-"
