"""Score the forecasts already realised in InfluxDB against the candles that realised them."""

from __future__ import annotations

import math
from typing import Any

from coinpredict.base.series import Series
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import PredictionStore


def live_scores(
    http: InfluxHTTP,
    db: str,
    store: CandleStore,
    series: Series,
    role: str,
    *,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Relative MAE (vs last-close on the same points), MAE, coverage, width of a role's forecasts.

    Only forecast steps whose candle is stored count. ``model_version`` narrows to one version.
    """
    points = PredictionStore(http, db=db).points(series, role, model_version)
    if not points:
        return {"samples": 0}
    first = min(int(p[6]) for p in points)
    last = max(int(p[0]) for p in points)
    candles = store.read(series, first, last)
    close_at = dict(zip(candles["timestamp"].to_list(), candles["close"].to_list(), strict=True))
    err = naive_err = width = 0.0
    covered = covered95 = n = 0
    for t, pred, lo, hi, lo95, hi95, origin in points:
        actual = close_at.get(int(t))
        base = close_at.get(int(origin))
        if actual is None or base is None:
            continue
        n += 1
        err += abs(pred - actual)
        naive_err += abs(base - actual)
        covered += lo <= actual <= hi
        covered95 += lo95 <= actual <= hi95
        width += (hi - lo) / actual * 100
    if n == 0:
        return {"samples": 0}
    return {
        "samples": n,
        "mae": err / n,
        "relative_mae": err / naive_err if naive_err > 0 else math.nan,
        "coverage": covered / n,
        "coverage_95": covered95 / n,
        "width_pct": width / n,
    }
