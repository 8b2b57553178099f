"""Candles in InfluxDB: measurement ``candles``, tags exchange/symbol/timeframe (docs/influxdb.md).

Writes are idempotent (same series + timestamp = same point) and batched. Reads return polars
frames with explicit column types, because InfluxDB returns whole floats as JSON integers.
polars and numpy are imported by the reads only: a backfill or ingest never loads them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from math import isfinite
from typing import TYPE_CHECKING, Any

from coinpredict.base.series import Series
from coinpredict.store.escape import ident, series_tags, tag, where_tags
from coinpredict.store.http import InfluxHTTP

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

MEASUREMENT = "candles"
FIELDS = ("open", "high", "low", "close", "volume")


def __getattr__(name: str) -> Any:
    if name == "SCHEMA":
        return schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def schema() -> dict[str, Any]:
    """The candle frame's column types (also as ``SCHEMA``)."""
    import polars as pl

    return {"timestamp": pl.Int64, **{f: pl.Float64 for f in FIELDS}}


BATCH = 5000

Row = Sequence[float]  # (open_ms, open, high, low, close, volume)


def empty_frame() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema=schema())


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _line(prefix: str, row: Row) -> str:
    """One candle as line protocol: floats always (repr is the shortest round-trip form and
    always carries a '.' or an exponent), non-finite values refused."""
    ts, o, h, lo, c, v = row
    if not (type(o) is type(h) is type(lo) is type(c) is type(v) is float):
        o, h, lo, c, v = float(o), float(h), float(lo), float(c), float(v)
    if not isfinite(o + h + lo + c + v) and not (
        isfinite(o) and isfinite(h) and isfinite(lo) and isfinite(c) and isfinite(v)
    ):
        raise ValueError(f"refusing a non-finite field value in candle {row!r}")
    return f"{prefix}open={o!r},high={h!r},low={lo!r},close={c!r},volume={v!r} {ts}"


def _lines(
    prefix: str, rows: Iterable[Row], texts: Sequence[Sequence[str]] | None
) -> Iterator[str]:
    """Line protocol for ``rows``; with ``texts`` (the values as the exchange sent them, checked
    to be plain decimals by coinpredict.base.candles.validate_page) the text is written as it
    came: InfluxDB parses it to the same float, and formatting floats again is the costliest
    step of a backfill."""
    if texts is None:
        return (_line(prefix, row) for row in rows)
    return (
        f"{prefix}open={t[0]},high={t[1]},low={t[2]},close={t[3]},volume={t[4]} {row[0]}"
        for row, t in zip(rows, texts, strict=True)
    )


def frame_of(values: Sequence[Sequence[float]] | np.ndarray) -> pl.DataFrame:
    """Rows (open_ms, open, high, low, close, volume) as a frame with the candle schema."""
    if len(values) == 0:
        return empty_frame()
    import numpy as np
    import polars as pl

    arr = np.asarray(values, dtype=np.float64)
    return pl.DataFrame(
        {
            "timestamp": arr[:, 0].astype(np.int64),
            **{f: arr[:, i + 1] for i, f in enumerate(FIELDS)},
        },
        schema=schema(),
    )


class CandleStore:
    """Read and write one database's candles. ``db_for`` maps a timeframe to its database."""

    def __init__(self, http: InfluxHTTP, *, db: str, db_1m: str) -> None:
        self.http = http
        self.db = db
        self.db_1m = db_1m

    def database(self, series: Series) -> str:
        return self.db_1m if series.timeframe.code == "1m" else self.db

    # --- writes -----------------------------------------------------------------------
    def line_prefix(self, series: Series) -> str:
        t = series_tags(series)
        return (
            f"{MEASUREMENT},exchange={tag(t['exchange'])},symbol={tag(t['symbol'])},"
            f"timeframe={tag(t['timeframe'])} "
        )

    def write(
        self,
        series: Series,
        rows: Iterable[Row],
        texts: Sequence[Sequence[str]] | None = None,
    ) -> int:
        """Write candles; return how many once InfluxDB acknowledged every batch.

        ``texts``: each row's five values as plain decimal text (see :func:`_lines`). One batch
        is sent from the calling thread on its keep-alive connection. Larger writes format batch
        N+1 while batch N is in flight (one sender thread, at most one batch outstanding), which
        pays off when InfluxDB is remote. The first failure is raised; nothing after it is sent.
        """
        db = self.database(series)
        batches = _batches(_lines(self.line_prefix(series), rows, texts), BATCH)
        first = next(batches, None)
        if first is None:
            return 0
        body = "\n".join(first).encode()
        count = len(first)
        second = next(batches, None)
        if second is None:
            self.http.write(db, body)
            return count
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx-write") as sender:
            pending: Future[None] = sender.submit(self.http.write, db, body)
            try:
                for batch in itertools.chain([second], batches):
                    body = "\n".join(batch).encode()
                    pending.result()  # the previous batch is acknowledged first
                    pending = sender.submit(self.http.write, db, body)
                    count += len(batch)
                pending.result()
            finally:
                pending.cancel()
                sender.submit(self.http.close)  # the sender thread's own connection
        return count

    # --- reads ------------------------------------------------------------------------
    def _where(self, series: Series, start_ms: int | None, end_ms: int | None) -> str:
        clause = where_tags(series_tags(series))
        if start_ms is not None:
            clause += f" AND time >= {int(start_ms)}ms"
        if end_ms is not None:
            clause += f" AND time <= {int(end_ms)}ms"
        return clause

    def read(
        self,
        series: Series,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        last: int | None = None,
    ) -> pl.DataFrame:
        """Candles with ``start <= open time <= end`` (or the newest ``last`` of them)."""
        cols = ",".join(ident(f) for f in FIELDS)
        q = f"SELECT {cols} FROM {ident(MEASUREMENT)} WHERE {self._where(series, start_ms, end_ms)}"
        if last is not None:
            q += f" ORDER BY time DESC LIMIT {int(last)}"
        values = self._values(series, q)
        return frame_of(values[::-1] if last is not None else values)

    def read_extending(
        self, series: Series, start_ms: int, end_ms: int, known: pl.DataFrame
    ) -> pl.DataFrame | None:
        """Like ``read(series, start_ms, end_ms)``, reusing ``known`` (an earlier read of this
        series, ascending): one request counts the stored candles over the part of the range
        that ``known`` covers and reads only the candles after it. None when ``known`` covers
        nothing of the range or the count differs (candles were added or deleted there since
        ``known`` was read): then read the whole range."""
        import numpy as np
        import polars as pl

        stamps = known["timestamp"].to_numpy()  # ascending: the range is one slice
        lo = int(np.searchsorted(stamps, start_ms, side="left"))
        hi = int(np.searchsorted(stamps, end_ms, side="right"))
        reuse = known.slice(lo, hi - lo)
        if reuse.height == 0:
            return None
        last = int(reuse["timestamp"][-1])
        cols = ",".join(ident(f) for f in FIELDS)
        q = (
            f"SELECT count({ident('close')}) FROM {ident(MEASUREMENT)} "
            f"WHERE {self._where(series, start_ms, last)};"
            f"SELECT {cols} FROM {ident(MEASUREMENT)} WHERE {self._where(series, last + 1, end_ms)}"
        )
        results = self.http.query_results(q, db=self.database(series))
        found = [r.get("series") or [] for r in results] + [[], []]
        counted = found[0][0]["values"][0][1] if found[0] else 0
        if counted != reuse.height:
            return None
        newer = frame_of(found[1][0]["values"] if found[1] else [])
        return pl.concat([reuse, newer]) if newer.height else reuse

    def timestamps(
        self, series: Series, start_ms: int | None = None, end_ms: int | None = None
    ) -> np.ndarray:
        """Only the open times (int64 ms), ascending: what gap detection needs."""
        q = (
            f"SELECT {ident('close')} FROM {ident(MEASUREMENT)} "
            f"WHERE {self._where(series, start_ms, end_ms)}"
        )
        values = self._values(series, q)
        import numpy as np

        return np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))

    def latest_open(self, series: Series, since_ms: int | None = None) -> int | None:
        """Open time of the newest stored candle. ``since_ms``: where it is expected to be at
        or after; asked first with that lower bound (InfluxDB answers a bounded ``DESC LIMIT
        1`` in about half the CPU: ~0.75 vs ~1.4 ms), without it only when nothing is there."""
        if since_ms is not None:
            found = self._edge(series, "DESC", since_ms)
            if found is not None:
                return found
        return self._edge(series, "DESC")

    def first_open(self, series: Series) -> int | None:
        return self._edge(series, "ASC")

    def _edge(self, series: Series, order: str, since_ms: int | None = None) -> int | None:
        q = (
            f"SELECT {ident('close')} FROM {ident(MEASUREMENT)} "
            f"WHERE {self._where(series, since_ms, None)} ORDER BY time {order} LIMIT 1"
        )
        values = self._values(series, q)
        return int(values[0][0]) if values else None

    def delete(
        self, series: Series, start_ms: int | None = None, end_ms: int | None = None
    ) -> None:
        q = f"DELETE FROM {ident(MEASUREMENT)} WHERE {self._where(series, start_ms, end_ms)}"
        self.http.query(q, db=self.database(series), write=True)

    def _values(self, series: Series, q: str) -> list[list[float]]:
        found = self.http.query(q, db=self.database(series))
        return found[0]["values"] if found else []


# --- gap detection's cheap scan (used by coinpredict/ingest/gaps.py) ---------------------------
DAY_MS = 86_400_000
STATEMENTS_PER_REQUEST = 40  # SELECTs sent in one query string (it travels in the URL)


def day_counts(store: CandleStore, series: Series, start_ms: int, end_ms: int) -> dict[int, int]:
    """Stored candles per UTC day with ``start <= open time <= end``: {day start (ms): count}.
    Days without a candle are absent. One request, one row per day: far less than reading every
    open time of a 1m series."""
    q = (
        f"SELECT count({ident('close')}) FROM {ident(MEASUREMENT)} "
        f"WHERE {store._where(series, start_ms, end_ms)} GROUP BY time(1d) fill(none)"
    )
    out: dict[int, int] = {}
    for t, n in store._values(series, q):
        if n:
            day = int(t) // DAY_MS * DAY_MS
            out[day] = out.get(day, 0) + int(n)
    return out


def timestamps_in(
    store: CandleStore, series: Series, ranges: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Open times (int64 ms, ascending) stored in each of ``ranges`` (inclusive, ascending and
    disjoint), read with several SELECTs per request."""
    import numpy as np

    db = store.database(series)
    parts: list[np.ndarray] = []
    for i in range(0, len(ranges), STATEMENTS_PER_REQUEST):
        q = ";".join(
            f"SELECT {ident('close')} FROM {ident(MEASUREMENT)} "
            f"WHERE {store._where(series, lo, hi)}"
            for lo, hi in ranges[i : i + STATEMENTS_PER_REQUEST]
        )
        for result in store.http.query_results(q, db=db):
            for found in result.get("series") or []:
                values = found.get("values") or []
                parts.append(np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values)))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
