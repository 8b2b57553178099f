"""The newest candles and forecasts of many series in a handful of queries (for health).

One grouped query per database for the latest candles (``GROUP BY symbol, timeframe ... LIMIT
N``), one grouped query for the newest forecast origin of every series, and the points of those
forecasts in batches of statements (see :func:`read_forecasts`): exactly what
:meth:`PredictionStore.latest` returns, without one round trip per series. Nothing here imports
numpy or polars (``status`` stays fast).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from coinpredict.base.series import Series
from coinpredict.store.escape import ident, literal
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import FIELDS, StoredForecast, forecast_from_rows
from coinpredict.store.predictions import MEASUREMENT as PREDICTIONS

CANDLES = "candles"  # = coinpredict.store.candles.MEASUREMENT (that module imports polars)
CANDLE_FIELDS = ("open", "high", "low", "close", "volume")
CandleRow = tuple[int, float, float, float, float, float]  # open_ms, open, high, low, close, vol
Key = tuple[str, str]  # (symbol, timeframe code)
READ_THREADS = 4


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
    http: InfluxHTTP,
    db: str,
    exchange: str,
    series: Sequence[Series],
    last: int,
    *,
    since: Mapping[str, int] | None = None,
) -> dict[Key, list[CandleRow]]:
    """The newest ``last`` candles of every series, ascending by open time.

    ``since`` (timeframe code -> open time; every timeframe of ``series``): where the newest
    ``last`` candles are expected to start. Then the candles from there on are read first, in
    ascending order and without an upper bound (InfluxDB 1.6 answers that in about half the CPU
    of ``ORDER BY time DESC LIMIT``: ~5 vs ~10 ms for 500 candles); a series that has at least
    ``last`` of them gets its newest ``last``, exactly what the descending read gives; the
    others (a gap, a late candle, a stale series) are read the descending way."""
    if since:
        out = _read_since(http, db, exchange, series, last, since)
        short = [s for s in series if len(out.get((s.symbol, s.timeframe.code), ())) < last]
        for s in short:
            out.pop((s.symbol, s.timeframe.code), None)
        if short:
            out.update(read_candles(http, db, exchange, short, last))
        return out
    cols = ",".join(ident(f) for f in CANDLE_FIELDS)
    q = (
        f"SELECT {cols} FROM {ident(CANDLES)} WHERE {_where(exchange, series)} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')} ORDER BY time DESC LIMIT {int(last)}"
    )
    out = {}
    for block in http.query(q, db=db):
        tags = block.get("tags") or {}
        out[(tags.get("symbol", ""), tags.get("timeframe", ""))] = _candle_rows(block)
    return out


def _read_since(
    http: InfluxHTTP,
    db: str,
    exchange: str,
    series: Sequence[Series],
    last: int,
    since: Mapping[str, int],
) -> dict[Key, list[CandleRow]]:
    """The candles from ``since[timeframe]`` on (at most the newest ``last`` kept), one
    ascending statement per timeframe, all in one request."""
    cols = ",".join(ident(f) for f in CANDLE_FIELDS)
    by_tf: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        by_tf[s.timeframe.code].append(s)
    q = ";".join(
        f"SELECT {cols} FROM {ident(CANDLES)} WHERE {_where(exchange, group)} "
        f"AND time >= {int(since[tf])}ms GROUP BY {ident('symbol')},{ident('timeframe')}"
        for tf, group in by_tf.items()
    )
    out: dict[Key, list[CandleRow]] = {}
    for block in http.query(q, db=db):
        tags = block.get("tags") or {}
        rows = _candle_rows(block, ascending=True)
        out[(tags.get("symbol", ""), tags.get("timeframe", ""))] = rows[-last:] if last else []
    return out


def _candle_rows(block: dict[str, Any], *, ascending: bool = False) -> list[CandleRow]:
    """One answered series as (open_ms, open, high, low, close, volume) rows, ascending (the
    answer's order: descending unless ``ascending``). InfluxDB sends whole floats as JSON
    integers (made floats here) and a missing field as null (kept as None: the evaluator
    reports it)."""
    cols = block.get("columns", [])
    at = [cols.index(f) if f in cols else None for f in ("time", *CANDLE_FIELDS)]
    raw = block.get("values") or []
    values = raw if ascending else list(reversed(raw))
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
    wanted = {(s.symbol, s.timeframe.code): s for s in series}
    origins, out = _newest_origins(http, db, exchange, series, role, wanted)
    statements = _points_statements(exchange, role, origins)
    batches = [
        ";".join(statements[i : i + STATEMENTS_PER_REQUEST])
        for i in range(0, len(statements), STATEMENTS_PER_REQUEST)
    ]
    for found in _run_batches(http, db, batches):
        for tags, rows in _groups(found):
            key = (tags.get("symbol", ""), tags.get("timeframe", ""))
            if key not in origins or not rows:
                continue
            try:
                out[key] = forecast_from_rows(wanted[key], role, rows)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                out[key] = f"stored forecast is unreadable ({type(exc).__name__}: {exc})"
    return out


def _newest_origins(
    http: InfluxHTTP,
    db: str,
    exchange: str,
    series: Sequence[Series],
    role: str,
    wanted: dict[Key, Series],
) -> tuple[dict[Key, int], dict[Key, StoredForecast | str]]:
    """(newest origin of each series, the series whose newest point names no origin)."""
    where = (
        f"{_where(exchange, series)} AND {ident('role')} = {literal(role)} "
        f"AND {ident('horizon')} = {literal('1')}"
    )
    q = (
        f"SELECT {ident('origin')} FROM {ident(PREDICTIONS)} WHERE {where} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')} ORDER BY time DESC LIMIT 1"
    )
    origins: dict[Key, int] = {}
    problems: dict[Key, StoredForecast | str] = {}
    for tags, rows in _groups(http.query(q, db=db)):
        key = (tags.get("symbol", ""), tags.get("timeframe", ""))
        if key not in wanted or not rows:
            continue
        try:
            origins[key] = int(rows[0]["origin"])
        except (KeyError, TypeError, ValueError):
            problems[key] = "stored forecast is unreadable (no origin)"
    return origins, problems


def _points_statements(exchange: str, role: str, origins: dict[Key, int]) -> list[str]:
    """One statement per (timeframe, origin): the series of a timeframe after a normal predict
    run share one origin, so they share one statement."""
    cols = ",".join(ident(f) for f in FIELDS)
    same: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (symbol, tf), origin in origins.items():
        same[(tf, origin)].append(symbol)
    return [
        f"SELECT {cols} FROM {ident(PREDICTIONS)} WHERE {ident('exchange')} = "
        f"{literal(exchange)} AND {_any_of('symbol', symbols)} AND "
        f"{ident('timeframe')} = {literal(tf)} AND {ident('role')} = {literal(role)} AND "
        f"time >= {origin}ms AND {ident('origin')} = {origin} "
        f"GROUP BY {ident('symbol')},{ident('timeframe')}"
        for (tf, origin), symbols in same.items()
    ]


def _run_batches(http: InfluxHTTP, db: str, batches: list[str]) -> list[list[dict[str, Any]]]:
    """The answered series of each batch; several batches at once, each on its own connection."""
    caller = threading.current_thread()

    def fetch(batch: str) -> list[dict[str, Any]]:
        try:
            return [s for r in http.query_results(batch, db=db) for s in r.get("series", [])]
        finally:
            if threading.current_thread() is not caller:
                http.close()  # the worker's own connection

    if len(batches) > 1:
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(batches))) as pool:
            return list(pool.map(fetch, batches))
    return [fetch(b) for b in batches]
