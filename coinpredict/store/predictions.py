"""Forecasts in InfluxDB: measurement ``predictions`` in COINPREDICT_INFLUX_DB (docs/influxdb.md).

One point per forecast step. Tags: exchange, symbol, timeframe, role (champion | shadow), horizon
(1..H). Time: the open time of the forecast candle (``predictions[h-1].timestamp``). Fields: close,
lower, upper, lower_95, upper_95, level, origin (ms, = predictions[0].timestamp), last_closed (ms),
issued_at (ms), model, version. (tags + time) identify one issued forecast step, so every forecast
ever issued stays scorable against the candle that realised it, and re-running predict for the same
origin rewrites the same points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coinpredict.base.series import Series
from coinpredict.store.escape import (
    field_float,
    field_string,
    ident,
    literal,
    series_tags,
    tag,
    where_tags,
)
from coinpredict.store.http import InfluxHTTP

MEASUREMENT = "predictions"
FIELDS = (
    "close",
    "lower",
    "upper",
    "lower_95",
    "upper_95",
    "level",
    "origin",
    "last_closed",
    "issued_at",
    "model",
    "version",
)


@dataclass(frozen=True)
class StoredForecast:
    series: Series
    role: str
    model_name: str
    model_version: str
    level: float
    last_closed_ms: int  # open time of the newest candle the forecast used
    origin_ms: int  # = timestamps[0] = close time of that candle
    issued_at_ms: int
    timestamps: tuple[int, ...]
    close: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    lower_95: tuple[float, ...]
    upper_95: tuple[float, ...]


class PredictionStore:
    def __init__(self, http: InfluxHTTP, *, db: str) -> None:
        self.http = http
        self.db = db

    def write(self, fc: StoredForecast) -> None:
        t = series_tags(fc.series, fc.role)
        prefix = (
            f"{MEASUREMENT},exchange={tag(t['exchange'])},symbol={tag(t['symbol'])},"
            f"timeframe={tag(t['timeframe'])},role={tag(fc.role)}"
        )
        lines = []
        for i, ts in enumerate(fc.timestamps):
            fields = (
                f"close={field_float(fc.close[i])},lower={field_float(fc.lower[i])},"
                f"upper={field_float(fc.upper[i])},lower_95={field_float(fc.lower_95[i])},"
                f"upper_95={field_float(fc.upper_95[i])},level={field_float(fc.level)},"
                f"origin={int(fc.origin_ms)}i,last_closed={int(fc.last_closed_ms)}i,"
                f"issued_at={int(fc.issued_at_ms)}i,model={field_string(fc.model_name)},"
                f"version={field_string(fc.model_version)}"
            )
            lines.append(f"{prefix},horizon={i + 1} {fields} {int(ts)}")
        self.http.write(self.db, "\n".join(lines).encode())

    def latest(self, series: Series, role: str = "champion") -> StoredForecast | None:
        """The most recently issued forecast (largest origin) of a series and role."""
        origin = self.newest_origin(series, role)
        return None if origin is None else self.at_origin(series, origin, role)

    def newest_origin(self, series: Series, role: str = "champion") -> int | None:
        """The origin (open time of the last closed candle) of the newest stored forecast."""
        where = where_tags(series_tags(series, role))
        q = (
            f"SELECT {ident('origin')} FROM {ident(MEASUREMENT)} WHERE {where} "
            f"AND {ident('horizon')} = {literal('1')} ORDER BY time DESC LIMIT 1"
        )
        found = self.http.query(q, db=self.db)
        return int(found[0]["values"][0][1]) if found else None

    def points(
        self, series: Series, role: str, model_version: str | None = None
    ) -> list[list[Any]]:
        """Every stored point of a role's forecasts (one version's, if given) as rows of
        ``time, close, lower, upper, lower_95, upper_95, last_closed``."""
        where = where_tags(series_tags(series, role))
        if model_version is not None:
            where += f" AND {ident('version')} = {literal(model_version)}"
        cols = ",".join(
            ident(f) for f in ("close", "lower", "upper", "lower_95", "upper_95", "last_closed")
        )
        found = self.http.query(
            f"SELECT {cols} FROM {ident(MEASUREMENT)} WHERE {where}", db=self.db
        )
        return found[0]["values"] if found else []

    def at_origin(
        self, series: Series, origin_ms: int, role: str = "champion"
    ) -> StoredForecast | None:
        where = where_tags(series_tags(series, role))
        cols = ",".join(ident(f) for f in FIELDS)
        q = (
            f"SELECT {cols} FROM {ident(MEASUREMENT)} WHERE {where} "
            f"AND time >= {int(origin_ms)}ms AND {ident('origin')} = {int(origin_ms)}"
        )
        found = self.http.query(q, db=self.db)
        if not found or not found[0].get("values"):
            return None
        cols_back = found[0]["columns"]
        rows = [dict(zip(cols_back, v, strict=False)) for v in found[0]["values"]]
        return forecast_from_rows(series, role, rows)


def forecast_from_rows(series: Series, role: str, rows: list[dict]) -> StoredForecast:
    """One issued forecast from its points (InfluxDB rows with ``time`` and the FIELDS)."""
    rows = sorted(rows, key=lambda r: r["time"])
    head = rows[0]
    return StoredForecast(
        series=series,
        role=role,
        model_name=str(head["model"]) if head["model"] is not None else "",
        model_version=str(head["version"]) if head["version"] is not None else "",
        level=float(head["level"]),
        last_closed_ms=int(head["last_closed"]),
        origin_ms=int(head["origin"]),
        issued_at_ms=int(head["issued_at"]),
        timestamps=tuple(int(r["time"]) for r in rows),
        close=tuple(float(r["close"]) for r in rows),
        lower=tuple(float(r["lower"]) for r in rows),
        upper=tuple(float(r["upper"]) for r in rows),
        lower_95=tuple(float(r["lower_95"]) for r in rows),
        upper_95=tuple(float(r["upper_95"]) for r in rows),
    )
