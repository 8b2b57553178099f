"""The thin I/O layer under the freshness evaluator: read facts, then call the pure code.

InfluxDB is asked a constant number of questions whatever the number of series: one grouped
query per database for the latest candles (``GROUP BY symbol, timeframe ... LIMIT 1``; with
``history`` > 0 the newest N candles instead), and one grouped query for the latest champion
forecasts (the newest point of every horizon, filtered to the newest origin, which is exactly
what :meth:`PredictionStore.latest` returns). State files and exported files are read from disk.
Nothing here imports numpy or polars, so ``status`` stays fast.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from coinpredict.clock import Clock
from coinpredict.config import Settings
from coinpredict.errors import ArtifactError, StoreError, StoreUnavailableError
from coinpredict.health.freshness import (
    CandleRow,
    Evaluation,
    SeriesFacts,
    evaluate_series,
)
from coinpredict.series import Series
from coinpredict.state import load_ingest, load_predict
from coinpredict.store.escape import ident, literal
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import MEASUREMENT as PREDICTIONS
from coinpredict.store.predictions import StoredForecast
from coinpredict.universe import resolve_symbols, series_for

log = logging.getLogger("coinpredict.health")

CANDLES = "candles"  # = coinpredict.store.candles.MEASUREMENT (that module imports polars)
CANDLE_FIELDS = ("open", "high", "low", "close", "volume")
FORECAST_FIELDS = (
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
HEALTH_TIMEOUT_S = 10.0

Key = tuple[str, str]  # (symbol, timeframe code)


def health_http(settings: Settings, timeout_s: float = HEALTH_TIMEOUT_S) -> InfluxHTTP:
    """Like ``wiring.influx`` without importing the candle store (numpy, polars)."""
    return InfluxHTTP(
        settings.influx_url,
        token=settings.influx_token,
        username=settings.influx_username,
        password=settings.influx_password,
        timeout_s=timeout_s,
    )


def _any_of(tag_key: str, values: Iterable[str]) -> str:
    return "(" + " OR ".join(f"{ident(tag_key)} = {literal(v)}" for v in sorted(set(values))) + ")"


def _where(exchange: str, series: Sequence[Series]) -> str:
    return (
        f"{ident('exchange')} = {literal(exchange)} "
        f"AND {_any_of('symbol', (s.symbol for s in series))} "
        f"AND {_any_of('timeframe', (s.timeframe.code for s in series))}"
    )


def _groups(found: list[dict[str, Any]]) -> Iterable[tuple[dict[str, str], list[dict[str, Any]]]]:
    for block in found:
        cols = block.get("columns", [])
        rows = [dict(zip(cols, v, strict=False)) for v in block.get("values", [])]
        yield block.get("tags") or {}, rows


def read_candles(
    http: InfluxHTTP, db: str, exchange: str, series: Sequence[Series], last: int
) -> dict[Key, list[CandleRow]]:
    """The newest ``last`` candles of every series, ascending by open time."""
    cols = ",".join(ident(f) for f in CANDLE_FIELDS)
    q = (
        f"SELECT {cols} FROM {ident(CANDLES)} WHERE {_where(exchange, series)} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')} ORDER BY time DESC LIMIT {int(last)}"
    )
    out: dict[Key, list[CandleRow]] = {}
    for tags, rows in _groups(http.query(q, db=db)):
        key = (tags.get("symbol", ""), tags.get("timeframe", ""))
        candles = []
        for r in reversed(rows):
            values = [r.get(f) for f in CANDLE_FIELDS]
            candles.append((int(r["time"]), *(float(v) if v is not None else None for v in values)))
        out[key] = candles  # type: ignore[assignment]
    return out


def _forecast(series: Series, role: str, rows: list[dict[str, Any]]) -> StoredForecast | None:
    """Mirror of PredictionStore.latest + at_origin on the newest point of every horizon."""
    first = [r for r in rows if r.get("_horizon") == "1"]
    if not first:
        return None
    origin = int(first[0]["origin"])
    mine = sorted(
        (r for r in rows if r.get("origin") == origin and int(r["time"]) >= origin),
        key=lambda r: r["time"],
    )
    head = mine[0]
    return StoredForecast(
        series=series,
        role=role,
        model_name=str(head["model"]) if head["model"] is not None else "",
        model_version=str(head["version"]) if head["version"] is not None else "",
        level=float(head["level"]),
        last_closed_ms=int(head["last_closed"]),
        origin_ms=int(head["origin"]),
        issued_at_ms=int(head["issued_at"]),
        timestamps=tuple(int(r["time"]) for r in mine),
        close=tuple(float(r["close"]) for r in mine),
        lower=tuple(float(r["lower"]) for r in mine),
        upper=tuple(float(r["upper"]) for r in mine),
        lower_95=tuple(float(r["lower_95"]) for r in mine),
        upper_95=tuple(float(r["upper_95"]) for r in mine),
    )


def read_forecasts(
    http: InfluxHTTP, db: str, exchange: str, series: Sequence[Series], role: str = "champion"
) -> dict[Key, StoredForecast | str]:
    """The latest forecast of every series, or a problem text when its points are unreadable."""
    cols = ",".join(ident(f) for f in FORECAST_FIELDS)
    q = (
        f"SELECT {cols} FROM {ident(PREDICTIONS)} WHERE {_where(exchange, series)} "
        f"AND {ident('role')} = {literal(role)} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')},{ident('horizon')} "
        "ORDER BY time DESC LIMIT 1"
    )
    rows_by_key: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for tags, rows in _groups(http.query(q, db=db)):
        key = (tags.get("symbol", ""), tags.get("timeframe", ""))
        for r in rows:
            r["_horizon"] = tags.get("horizon")
            rows_by_key[key].append(r)
    wanted = {(s.symbol, s.timeframe.code): s for s in series}
    out: dict[Key, StoredForecast | str] = {}
    for key, rows in rows_by_key.items():
        if key not in wanted:
            continue
        try:
            fc = _forecast(wanted[key], role, rows)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            out[key] = f"stored forecast is unreadable ({type(exc).__name__}: {exc})"
            continue
        if fc is not None:
            out[key] = fc
    return out


@dataclass
class Collected:
    facts: list[SeriesFacts]
    store_error: str | None
    problems: list[str]


def collect(
    settings: Settings,
    series: Sequence[Series],
    *,
    http: InfluxHTTP | None = None,
    history: int = 0,
    check_exports: bool = True,
) -> Collected:
    """Read every fact the evaluator needs. Never raises for InfluxDB trouble: reports it."""
    own = http is None
    client = http or health_http(settings)
    store_error: str | None = None
    candles: dict[Key, list[CandleRow]] = {}
    candle_errors: dict[Key, str] = {}
    forecasts: dict[Key, StoredForecast | str] = {}
    forecast_errors: dict[Key, str] = {}
    try:
        by_db: dict[tuple[str, str], list[Series]] = defaultdict(list)
        for s in series:
            by_db[(settings.database_for(s.timeframe), s.exchange)].append(s)
        for (db, exchange), group in by_db.items():
            try:
                candles.update(read_candles(client, db, exchange, group, max(1, history)))
            except StoreUnavailableError:
                raise
            except (StoreError, KeyError, TypeError, ValueError) as exc:
                for s in group:
                    candle_errors[(s.symbol, s.timeframe.code)] = f"candle read failed: {exc}"
        targets = [s for s in series if s.timeframe.code != "1m"]
        by_ex: dict[str, list[Series]] = defaultdict(list)
        for s in targets:
            by_ex[s.exchange].append(s)
        for exchange, group in by_ex.items():
            try:
                forecasts.update(read_forecasts(client, settings.influx_db, exchange, group))
            except StoreUnavailableError:
                raise
            except StoreError as exc:
                for s in group:
                    forecast_errors[(s.symbol, s.timeframe.code)] = f"forecast read failed: {exc}"
    except StoreUnavailableError as exc:
        store_error = str(exc)
    finally:
        if own:
            client.close()

    from coinpredict.publish.artifacts import (
        MANIFEST,
        STATUS,
        file_problem,
        history_name,
        prediction_name,
    )

    facts = []
    for s in series:
        key = (s.symbol, s.timeframe.code)
        rows = candles.get(key) or []
        latest = rows[-1] if rows else None
        data_problem = None
        if history and any(None in r for r in rows):
            data_problem = "stored candles have missing fields"
        fc = forecasts.get(key)
        predict_state = predict_problem = ingest_state = ingest_problem = None
        if s.timeframe.code != "1m":
            try:
                predict_state = load_predict(settings.state_dir, s)
            except ArtifactError as exc:
                predict_problem = f"predict state: {exc}"
        try:
            ingest_state = load_ingest(settings.state_dir, s)
        except ArtifactError as exc:
            ingest_problem = f"ingest state: {exc}"
        export_problems: list[str] = []
        if check_exports:
            if s.timeframe.code != "1m":
                found = file_problem(settings.export_dir / prediction_name(s), "prediction", s)
                if found:
                    export_problems.append(found)
            found = file_problem(settings.export_dir / history_name(s), "history", s)
            if found:
                export_problems.append(found)
        unknown = store_error
        facts.append(
            SeriesFacts(
                series=s,
                latest=latest,
                data_error=unknown or candle_errors.get(key),
                data_problem=data_problem,
                forecast=fc if isinstance(fc, StoredForecast) else None,
                forecast_error=unknown or forecast_errors.get(key),
                forecast_problem=fc if isinstance(fc, str) else None,
                predict_state=predict_state,
                predict_problem=predict_problem,
                ingest_state=ingest_state,
                ingest_problem=ingest_problem,
                export_problems=tuple(export_problems),
                history=tuple(rows) if history else None,
            )
        )
    problems = []
    if check_exports:
        for name in (MANIFEST, STATUS):
            found = file_problem(settings.export_dir / name, "json")
            if found:
                problems.append(found)
    return Collected(facts, store_error, problems)


def configured_series(settings: Settings, clock: Clock) -> list[Series]:
    """The configured series (top-N: the cached set; the exchange is never contacted)."""
    return series_for(settings, resolve_symbols(settings, clock, None))


def evaluate(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    check_exports: bool = True,
    http: InfluxHTTP | None = None,
) -> Evaluation:
    """Evaluate every (configured) series now. InfluxDB down -> ``store_error``, never raises."""
    now = clock.now_ms()
    chosen = list(series) if series is not None else configured_series(settings, clock)
    got = collect(settings, chosen, http=http, check_exports=check_exports)
    return evaluation_from(settings, got, now)


def evaluation_from(settings: Settings, got: Collected, now_ms: int) -> Evaluation:
    healths = [evaluate_series(f, settings.policy(f.series.timeframe), now_ms) for f in got.facts]
    return Evaluation(now_ms, healths, store_error=got.store_error, problems=list(got.problems))
