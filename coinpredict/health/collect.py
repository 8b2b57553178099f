"""The thin I/O layer under the freshness evaluator: read facts, then call the pure code.

InfluxDB is asked a handful of grouped questions whatever the number of series
(:mod:`coinpredict.store.latest`); state files and exported files are read from disk. Nothing
here imports numpy or polars (``status`` stays fast).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, StoreError, StoreUnavailableError
from coinpredict.base.series import Series
from coinpredict.health.exported import (
    MANIFEST,
    STATUS,
    file_problem,
    history_name,
    prediction_name,
)
from coinpredict.health.freshness import (
    Evaluation,
    SeriesFacts,
    evaluate_series,
)
from coinpredict.ingest.universe import resolve_symbols, series_for
from coinpredict.local.state import load_ingest, load_predict
from coinpredict.store import connect
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.latest import CandleRow, Key, read_candles, read_forecasts
from coinpredict.store.predictions import StoredForecast

log = logging.getLogger("coinpredict.health")

HEALTH_TIMEOUT_S = 10.0

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
