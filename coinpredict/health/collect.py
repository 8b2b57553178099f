"""The thin I/O layer under the freshness evaluator: read facts, then call the pure code.

InfluxDB is asked a handful of grouped questions whatever the number of series
(:mod:`coinpredict.store.latest`); state files and exported files are read from disk. Nothing
here imports numpy or polars (``status`` stays fast).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from coinpredict.local.state import IngestState, PredictState, load_ingest, load_predict
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


@dataclass
class _StoreReads:
    """What InfluxDB answered for a set of series (``store_error``: it could not be reached)."""

    candles: dict[Key, list[CandleRow]] = field(default_factory=dict)
    candle_errors: dict[Key, str] = field(default_factory=dict)
    forecasts: dict[Key, StoredForecast | str] = field(default_factory=dict)
    forecast_errors: dict[Key, str] = field(default_factory=dict)
    store_error: str | None = None


@dataclass
class _Reader:
    """The candle and forecast queries, several at once (each worker on its own connection)."""

    settings: Settings
    client: InfluxHTTP
    own: bool  # the client is ours: close each worker's connection when it is done
    history: int
    reads: _StoreReads = field(default_factory=_StoreReads)
    now_ms: int | None = None  # when given, a history read starts where its window should

    def _since(self, group: list[Series]) -> dict[str, int] | None:
        """Where each timeframe's newest ``history`` candles start when none is missing (the
        last closed one stored): read_candles reads from there first."""
        if self.now_ms is None or self.history <= 1:
            return None
        tfs = {s.timeframe.code: s.timeframe for s in group}
        return {
            code: tf.add(tf.last_closed_open(self.now_ms), -(self.history - 1))
            for code, tf in tfs.items()
        }

    def candles(self, db: str, exchange: str, group: list[Series]) -> None:
        try:
            found = read_candles(
                self.client, db, exchange, group, max(1, self.history), since=self._since(group)
            )
            self.reads.candles.update(found)
        except StoreUnavailableError:
            raise
        except (StoreError, KeyError, TypeError, ValueError) as exc:
            for s in group:
                self.reads.candle_errors[_key(s)] = f"candle read failed: {exc}"
        finally:
            self._done()

    def forecasts(self, exchange: str, group: list[Series]) -> None:
        try:
            found = read_forecasts(self.client, self.settings.influx_db, exchange, group)
            self.reads.forecasts.update(found)
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            for s in group:
                self.reads.forecast_errors[_key(s)] = f"forecast read failed: {exc}"
        finally:
            self._done()

    def _done(self) -> None:
        if self.own:
            self.client.close()  # this worker thread's connection

    def tasks(self, series: Sequence[Series]) -> list[tuple[Any, tuple[Any, ...]]]:
        by_db: dict[tuple[str, str], list[Series]] = defaultdict(list)
        by_ex: dict[str, list[Series]] = defaultdict(list)
        for s in series:
            if _key(s) not in self.reads.candles:
                by_db[(self.settings.database_for(s.timeframe), s.exchange)].append(s)
            if s.timeframe.code != "1m" and _key(s) not in self.reads.forecasts:
                by_ex[s.exchange].append(s)
        tasks: list[tuple[Any, tuple[Any, ...]]] = []
        for (db, exchange), group in by_db.items():
            tasks.extend((self.candles, (db, exchange, c)) for c in _chunks(group, HISTORY_CHUNK))
        tasks.extend((self.forecasts, (exchange, group)) for exchange, group in by_ex.items())
        return tasks

    def read(self, series: Sequence[Series], threads: int = READ_THREADS) -> _StoreReads:
        """``threads`` <= 1: every query in the calling thread, one after the other (on its
        one connection of the client: no pool, no new connection per call)."""
        tasks = self.tasks(series)
        if threads <= 1:
            self._gather([functools.partial(fn, *args) for fn, args in tasks])
            return self.reads
        with ThreadPoolExecutor(max_workers=min(threads, max(1, len(tasks)))) as pool:
            self._gather([pool.submit(fn, *args).result for fn, args in tasks])
        return self.reads

    def _gather(self, calls: list[Callable[[], object]]) -> None:
        """Run (or wait for) each read; InfluxDB being unavailable is recorded, not raised."""
        for call in calls:
            try:
                call()
            except StoreUnavailableError as exc:
                self.reads.store_error = self.reads.store_error or str(exc)


def _key(s: Series) -> Key:
    return (s.symbol, s.timeframe.code)


def _predict_state(settings: Settings, s: Series) -> tuple[PredictState | None, str | None]:
    """The predict state of a series (none for 1m), or what is wrong with its file."""
    if s.timeframe.code == "1m":
        return None, None
    try:
        return load_predict(settings.state_dir, s), None
    except ArtifactError as exc:
        return None, f"predict state: {exc}"


def _ingest_state(settings: Settings, s: Series) -> tuple[IngestState | None, str | None]:
    try:
        return load_ingest(settings.state_dir, s), None
    except ArtifactError as exc:
        return None, f"ingest state: {exc}"


def _export_problems(settings: Settings, s: Series) -> tuple[str, ...]:
    """What is wrong with the series' published files (nothing: an empty tuple)."""
    checks = [(history_name(s), "history", False)]
    if s.timeframe.code != "1m":
        checks.insert(0, (prediction_name(s), "prediction", True))
    found = (file_problem(settings.export_dir / n, kind, s, deep=d) for n, kind, d in checks)
    return tuple(f for f in found if f)


def _series_facts(
    settings: Settings, s: Series, reads: _StoreReads, history: int, check_exports: bool
) -> SeriesFacts:
    key = _key(s)
    rows = reads.candles.get(key) or []
    fc = reads.forecasts.get(key)
    missing = bool(history) and any(None in r for r in rows)
    predict_state, predict_problem = _predict_state(settings, s)
    ingest_state, ingest_problem = _ingest_state(settings, s)
    return SeriesFacts(
        series=s,
        latest=rows[-1] if rows else None,
        data_error=reads.store_error or reads.candle_errors.get(key),
        data_problem="stored candles have missing fields" if missing else None,
        forecast=fc if isinstance(fc, StoredForecast) else None,
        forecast_error=reads.store_error or reads.forecast_errors.get(key),
        forecast_problem=fc if isinstance(fc, str) else None,
        export_problems=_export_problems(settings, s) if check_exports else (),
        history=tuple(rows) if history else None,
        predict_state=predict_state,
        predict_problem=predict_problem,
        ingest_state=ingest_state,
        ingest_problem=ingest_problem,
    )


def collect(
    settings: Settings,
    series: Sequence[Series],
    *,
    http: InfluxHTTP | None = None,
    history: int = 0,
    check_exports: bool = True,
    threads: int = READ_THREADS,
    forecasts: Mapping[Series, StoredForecast] | None = None,
    candles: Mapping[Series, Sequence[CandleRow]] | None = None,
    now_ms: int | None = None,
) -> Collected:
    """Read every fact the evaluator needs. Never raises for InfluxDB trouble: reports it.
    ``threads``: queries at once (1: all in the calling thread, on its connection of ``http``).
    ``forecasts``: the newest forecast of some series, known already (``coinpredict cycle``:
    the one its predict stage has just stored); they are not read again. ``candles``: the
    same for the newest candles (``history`` of them, ascending; the cycle: those predict has
    just forecast from). ``now_ms``: with ``history``, the candle history is read from where it
    should start first (cheaper for InfluxDB; the same candles, see ``read_candles``)."""
    client = http or health_http(settings)
    reader = _Reader(settings, client, http is None, history, now_ms=now_ms)
    for s, fc in (forecasts or {}).items():
        reader.reads.forecasts[_key(s)] = fc
    for s, rows in (candles or {}).items():
        reader.reads.candles[_key(s)] = list(rows)
    reads = reader.read(series, threads)
    facts = [_series_facts(settings, s, reads, history, check_exports) for s in series]
    problems = []
    if check_exports:
        for name in (MANIFEST, STATUS):
            found = file_problem(settings.export_dir / name, "json")
            if found:
                problems.append(found)
    return Collected(facts, reads.store_error, problems)


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
