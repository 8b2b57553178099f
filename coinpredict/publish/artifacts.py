"""The exported documents: names, builders and validators (docs/health.md describes each field).

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

from coinpredict.base.timeframes import iso
from coinpredict.health.exported import SCHEMA_VERSION
from coinpredict.health.freshness import (
    BLOCKED,
    CORRUPT,
    FRESH,
    STALE,
    CandleRow,
    SeriesHealth,
    Verdict,
    fmt_duration,
)


def _age_s(v: Verdict) -> float | None:
    return round(v.age_ms / 1000, 3) if v.age_ms is not None else None


# --- builders -------------------------------------------------------------------------------


def prediction_warning(h: SeriesHealth) -> str | None:
    served = h.served
    if served is None:
        return None
    parts = []
    if served.freshness == STALE:
        parts.append(f"stale: {served.reason}")
    elif served.freshness in BLOCKED:
        parts.append(f"blocked ({served.freshness}): {served.reason}; no predictions are served")
    if h.degraded:
        parts.append(
            f"degraded: the latest predict run failed ({h.degraded_reason}); "
            "serving the last good forecast"
        )
    return "; ".join(parts) or None


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
        "reason": served.reason if served.freshness != FRESH else None,
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
        warning = f"{data.freshness}: {data.reason}"
    return {
        "schema_version": SCHEMA_VERSION,
        "symbol": h.series.symbol,
        "timeframe": h.series.timeframe.code,
        "generated_at": iso(now_ms),
        "last_candle": iso(data.at_ms) if data.at_ms is not None else None,
        "freshness": data.freshness,
        "age_seconds": _age_s(data),
        "warning": warning,
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
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
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
    if compact:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    else:
        text = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


# --- validators -----------------------------------------------------------------------------


def describe_age(v: Verdict) -> str:
    return fmt_duration(v.age_ms) if v.age_ms is not None else "-"
