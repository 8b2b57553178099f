"""The thin I/O layer under the freshness evaluator: read facts, then call the pure code.

InfluxDB is asked a handful of questions whatever the number of series: one grouped query per
database for the latest candles (``GROUP BY symbol, timeframe ... LIMIT 1``; with ``history`` > 0
the newest N candles instead), one grouped query for the newest forecast origin of every series,
and the points of those forecasts in batches of statements (see :func:`read_forecasts`): exactly
what :meth:`PredictionStore.latest` returns, without one round trip per series. State files
and exported files are read from disk. Nothing here imports numpy or polars (``status`` stays
fast).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, StoreError, StoreUnavailableError
from coinpredict.base.series import Series
from coinpredict.health.freshness import (
    CandleRow,
    Evaluation,
    SeriesFacts,
    evaluate_series,
)
from coinpredict.ingest.universe import resolve_symbols, series_for
from coinpredict.local.state import load_ingest, load_predict
from coinpredict.store import connect
from coinpredict.store.escape import ident, literal
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import FIELDS, StoredForecast, forecast_from_rows
from coinpredict.store.predictions import MEASUREMENT as PREDICTIONS

log = logging.getLogger("coinpredict.health")

CANDLES = "candles"  # = coinpredict.store.candles.MEASUREMENT (that module imports polars)
CANDLE_FIELDS = ("open", "high", "low", "close", "volume")
HEALTH_TIMEOUT_S = 10.0

Key = tuple[str, str]  # (symbol, timeframe code)
READ_THREADS = 4
HISTORY_CHUNK = 40  # series per candle query: several queries run at once


def _chunks(group: list[Series], size: int) -> list[list[Series]]:
    """Split by symbol (every timeframe of a symbol in one chunk) into about ``size`` series."""
    by_symbol: dict[str, list[Series]] = defaultdict(list)
    for s in group:
        by_symbol[s.symbol].append(s)
    out: list[list[Series]] = [[]]
    for members in by_symbol.values():
        if out[-1] and len(out[-1]) + len(members) > size:
            out.append([])
        out[-1].extend(members)
    return [c for c in out if c]


def health_http(settings: Settings, timeout_s: float = HEALTH_TIMEOUT_S) -> InfluxHTTP:
    """A bare InfluxDB client with the health timeout (no candle store: numpy, polars)."""
    return connect.influx(settings, timeout_s)


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
    for block in http.query(q, db=db):
        tags = block.get("tags") or {}
        out[(tags.get("symbol", ""), tags.get("timeframe", ""))] = _candle_rows(block)
    return out


def _candle_rows(block: dict[str, Any]) -> list[CandleRow]:
    """One answered series as (open_ms, open, high, low, close, volume) rows, ascending. InfluxDB
    sends whole floats as JSON integers (made floats here) and a missing field as null (kept as
    None: the evaluator reports it)."""
    cols = block.get("columns", [])
    at = [cols.index(f) if f in cols else None for f in ("time", *CANDLE_FIELDS)]
    values = list(reversed(block.get("values") or []))
    if at == [0, 1, 2, 3, 4, 5]:  # the columns as asked for
        try:
            return [
                (int(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]), float(v[5]))
                for v in values
            ]
        except (TypeError, IndexError):
            pass  # a null or short row: the careful way below

    def cell(v: list[Any], i: int | None) -> float | None:
        x = v[i] if i is not None and i < len(v) else None
        return float(x) if x is not None else None

    t = at[0]
    if t is None:
        return []
    return [(int(v[t]), *(cell(v, i) for i in at[1:])) for v in values]  # type: ignore[misc]


STATEMENTS_PER_REQUEST = 40  # keeps the query string of one request around 12 KB


def read_forecasts(
    http: InfluxHTTP, db: str, exchange: str, series: Sequence[Series], role: str = "champion"
) -> dict[Key, StoredForecast | str]:
    """The latest forecast of every series (what PredictionStore.latest returns), or a problem.

    Two steps, both independent of history length: one grouped query for the newest origin of
    every series (its newest ``horizon = 1`` point), then the points of those origins, one
    statement per distinct (timeframe, origin), many statements per request. (One query grouped
    by horizon would be simpler, but InfluxDB 1.x is slow with thousands of groups.)
    """
    where = (
        f"{_where(exchange, series)} AND {ident('role')} = {literal(role)} "
        f"AND {ident('horizon')} = {literal('1')}"
    )
    q = (
        f"SELECT {ident('origin')} FROM {ident(PREDICTIONS)} WHERE {where} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')} ORDER BY time DESC LIMIT 1"
    )
    wanted = {(s.symbol, s.timeframe.code): s for s in series}
    out: dict[Key, StoredForecast | str] = {}
    origins: dict[Key, int] = {}
    for tags, rows in _groups(http.query(q, db=db)):
        key = (tags.get("symbol", ""), tags.get("timeframe", ""))
        if key not in wanted or not rows:
            continue
        try:
            origins[key] = int(rows[0]["origin"])
        except (KeyError, TypeError, ValueError):
            out[key] = "stored forecast is unreadable (no origin)"
    cols = ",".join(ident(f) for f in FIELDS)
    # series with the same origin (every series of a timeframe after a normal predict run)
    # share one statement
    same: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (symbol, tf), origin in origins.items():
        same[(tf, origin)].append(symbol)
    statements = []
    for (tf, origin), symbols in same.items():
        statements.append(
            f"SELECT {cols} FROM {ident(PREDICTIONS)} WHERE {ident('exchange')} = "
            f"{literal(exchange)} AND {_any_of('symbol', symbols)} AND "
            f"{ident('timeframe')} = {literal(tf)} AND {ident('role')} = {literal(role)} AND "
            f"time >= {origin}ms AND {ident('origin')} = {origin} "
            f"GROUP BY {ident('symbol')},{ident('timeframe')}"
        )
    batches = [
        ";".join(statements[i : i + STATEMENTS_PER_REQUEST])
        for i in range(0, len(statements), STATEMENTS_PER_REQUEST)
    ]

    def fetch(batch: str) -> list[dict[str, Any]]:
        try:
            return [s for r in http.query_results(batch, db=db) for s in r.get("series", [])]
        finally:
            if threading.current_thread() is not caller:
                http.close()  # the worker's own connection

    caller = threading.current_thread()
    if len(batches) > 1:
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(batches))) as pool:
            answers = list(pool.map(fetch, batches))
    else:
        answers = [fetch(b) for b in batches]
    for found in answers:
        for tags, rows in _groups(found):
            key = (tags.get("symbol", ""), tags.get("timeframe", ""))
            if key not in origins or not rows:
                continue
            try:
                out[key] = forecast_from_rows(wanted[key], role, rows)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                out[key] = f"stored forecast is unreadable ({type(exc).__name__}: {exc})"
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

    def candle_task(db: str, exchange: str, group: list[Series]) -> None:
        try:
            candles.update(read_candles(client, db, exchange, group, max(1, history)))
        except StoreUnavailableError:
            raise
        except (StoreError, KeyError, TypeError, ValueError) as exc:
            for s in group:
                candle_errors[(s.symbol, s.timeframe.code)] = f"candle read failed: {exc}"
        finally:
            if own:
                client.close()  # this worker thread's connection

    def forecast_task(exchange: str, group: list[Series]) -> None:
        try:
            forecasts.update(read_forecasts(client, settings.influx_db, exchange, group))
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            for s in group:
                forecast_errors[(s.symbol, s.timeframe.code)] = f"forecast read failed: {exc}"
        finally:
            if own:
                client.close()

    tasks: list[tuple[Any, tuple[Any, ...]]] = []
    by_db: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in series:
        by_db[(settings.database_for(s.timeframe), s.exchange)].append(s)
    for (db, exchange), group in by_db.items():
        for chunk in _chunks(group, HISTORY_CHUNK):
            tasks.append((candle_task, (db, exchange, chunk)))
    by_ex: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        if s.timeframe.code != "1m":
            by_ex[s.exchange].append(s)
    for exchange, group in by_ex.items():
        tasks.append((forecast_task, (exchange, group)))
    # InfluxDB answers several queries at once; each worker uses its own connection
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, max(1, len(tasks)))) as pool:
        futures = [pool.submit(fn, *args) for fn, args in tasks]
        for future in futures:
            try:
                future.result()
            except StoreUnavailableError as exc:
                store_error = store_error or str(exc)

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
            found = file_problem(settings.export_dir / history_name(s), "history", s, deep=False)
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
