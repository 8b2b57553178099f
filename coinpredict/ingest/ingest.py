"""Backfill and ingest: page closed candles from the exchange into InfluxDB behind a cursor.

The cursor (open time of the last stored candle) advances only after InfluxDB acknowledged the
candles (one write carries up to five pages). One failing series never stops the others. Invalid
candles are never stored: they are counted, logged with the reason, and kept in
STATE_DIR/quarantine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coinpredict.base.candles import Candle
from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.crashpoints import crash_point, if_planted
from coinpredict.base.errors import ArtifactError, ExchangeError, StoreError
from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import HOUR_MS, TIMEFRAMES, iso
from coinpredict.ingest.outcomes import IngestDetail, IngestOutcome, IngestReport
from coinpredict.local.state import (
    IngestState,
    append_jsonl,
    load_ingest,
    save_ingest,
    series_file,
)
from coinpredict.store.candles import BATCH, CandleStore

log = logging.getLogger("coinpredict.ingest.ingest")

# 1m candles older than (now - window + margin) are never written: InfluxDB would drop them.
RETENTION_MARGIN_MS = HOUR_MS


class Exchange(Protocol):
    """What ingest needs from the exchange adapter (coinpredict.exchange)."""

    exchange_id: str

    def first_candle_ms(self, symbol: str, tf: Any) -> int | None: ...
    def not_trading(self, symbol: str) -> str | None: ...
    def fetch_closed(
        self, symbol: str, tf: Any, since_ms: int, until_ms: int | None = None
    ) -> Any: ...


Progress = Callable[[Series, int, int, int | None], None]  # series, stored, pages, expected


@dataclass(frozen=True)
class Window:
    """What to fetch for one series: open times in [start, until]; None = up to the last closed."""

    since_ms: int | None = None
    until_ms: int | None = None


def retention_start(settings: Settings, now_ms: int) -> int:
    """The oldest 1m open time worth fetching: inside the rolling window, with a margin."""
    return TIMEFRAMES["1m"].next_boundary(
        now_ms - settings.one_minute_window_ms + RETENTION_MARGIN_MS
    )


def quarantine_path(state_dir: Path, series: Series) -> Path:
    return series_file(state_dir, "quarantine", series, ".jsonl")


def _start(
    series: Series,
    settings: Settings,
    exchange: Exchange,
    st_cursor: int | None,
    since_ms: int | None,
    now_ms: int,
    outcome: IngestOutcome,
) -> tuple[int | None, int | None]:
    """Return (start open time, series start to remember if newly learned)."""
    tf = series.timeframe
    if st_cursor is not None:
        start = tf.add(st_cursor, 1)
        if since_ms is not None:
            start = max(start, tf.floor(since_ms))
        if tf.code == "1m":  # a cursor behind the window: InfluxDB would drop the older points
            start = max(start, retention_start(settings, now_ms))
        return start, None
    if since_ms is not None:
        start = tf.floor(since_ms)
        if start < since_ms:
            start = tf.add(start, 1)
        return start, None
    if tf.code == "1m":
        return retention_start(settings, now_ms), None
    policy_start = settings.policy(tf).backfill_start_ms
    if policy_start is not None:
        return tf.floor(policy_start), None
    first = exchange.first_candle_ms(series.symbol, tf)
    if first is None:
        outcome.detail.note = "the exchange has no candles for this series"
        return None, None
    return first, first


def ingest_series(
    series: Series,
    settings: Settings,
    exchange: Exchange,
    store: CandleStore,
    clock: Clock,
    window: Window = Window(),
    progress: Progress | None = None,
) -> IngestOutcome:
    outcome = SeriesOutcome(series, IngestDetail())
    state_dir = settings.state_dir
    try:
        run = _SeriesRun(series, settings, store, clock, outcome)
        run.fetch(exchange, window, progress)
    except (ExchangeError, StoreError, ArtifactError) as exc:
        outcome.fail(exc.message)
        log.error("%s: %s", series, exc.message)
        _record_failure(state_dir, series, exc.message, clock)
    outcome.detail.cursor = load_ingest(state_dir, series).cursor if outcome.ok else None
    return outcome


def _record_failure(state_dir: Path, series: Series, message: str, clock: Clock) -> None:
    try:
        st = load_ingest(state_dir, series)
        save_ingest(
            state_dir,
            series,
            st.evolve(status="failed", last_error=message, updated_at=clock.now_ms()),
        )
    except ArtifactError as inner:
        log.error("%s: cannot record the failure: %s", series, inner.message)


def _repaired(state_dir: Path, series: Series, store: CandleStore) -> IngestState:
    """The ingest state with its cursor checked against InfluxDB (never ahead of the data)."""
    st = load_ingest(state_dir, series)
    latest = store.latest_open(series, since_ms=st.cursor)  # at or after the cursor, usually
    cursor = st.cursor
    if cursor is not None and (latest is None or cursor > latest):
        log.warning(
            "%s: cursor %s is ahead of the stored data (%s); repaired from InfluxDB",
            series,
            iso(cursor),
            iso(latest) if latest is not None else "none",
        )
        cursor = latest
    elif cursor is None and latest is not None:
        cursor = latest
    if cursor != st.cursor:
        st = st.evolve(cursor=cursor)
        save_ingest(state_dir, series, st)
    return st


class _Pending:
    """Candles fetched and not yet written: up to the store's batch (five pages) go to InfluxDB
    in one write (fewer requests and WAL syncs for influxd); the cursor still moves only after
    InfluxDB acknowledged the write."""

    def __init__(self) -> None:
        self.candles: list[Candle] = []
        self.texts: list[list[str]] | None = []

    def add(self, candles: list[Candle], texts: list[list[str]] | None) -> int:
        self.candles.extend(candles)
        if texts is None:
            self.texts = None  # written from the floats, as any page without text
        elif self.texts is not None:
            self.texts.extend(texts)
        return len(self.candles)

    def take(self) -> tuple[list[Candle], list[list[str]] | None]:
        taken = self.candles, self.texts
        self.candles, self.texts = [], []
        return taken


class _SeriesRun:
    """One series' fetch-and-store loop. A run that starts without a cursor (a new series, from
    ``--since``, the listing or the backfill policy) remembers the first candle it stores as
    the series start (the earliest such candle wins), which ``detect-gaps`` starts from."""

    def __init__(
        self,
        series: Series,
        settings: Settings,
        store: CandleStore,
        clock: Clock,
        outcome: IngestOutcome,
    ) -> None:
        self.series = series
        self.settings = settings
        self.state_dir = settings.state_dir
        self.store = store
        self.clock = clock
        self.outcome = outcome
        self.st = _repaired(self.state_dir, series, store)
        self.learn_start = self.st.cursor is None

    def save(self, **changes: object) -> None:
        self.st = self.st.evolve(**changes)
        save_ingest(self.state_dir, self.series, self.st)

    def fetch(self, exchange: Exchange, window: Window, progress: Progress | None) -> None:
        series, tf, detail = self.series, self.series.timeframe, self.outcome.detail
        status = exchange.not_trading(series.symbol)
        if status is not None:  # no requests until the market list says it trades again
            detail.skipped = f"not trading (status {status})"
            self.save(status="ok", last_error=None, updated_at=self.clock.now_ms())
            return
        now = self.clock.now_ms()
        last_batch: dict[str, object] = {}
        start, listed = _start(
            series, self.settings, exchange, self.st.cursor, window.since_ms, now, self.outcome
        )
        if listed is not None and self.st.series_start is None:
            self.save(series_start=listed)
        last_closed = tf.last_closed_open(now)
        until = last_closed if window.until_ms is None else min(window.until_ms, last_closed)
        if start is not None and start <= until:
            expected = tf.count(start, until)
            floor = None
            if tf.code == "1m":
                floor = now - self.settings.one_minute_window_ms + RETENTION_MARGIN_MS
            pending = _Pending()
            try:
                for page in exchange.fetch_closed(series.symbol, tf, start, until):
                    detail.pages += 1
                    self.quarantine(page.rejected)
                    if pending.add(*page.between(floor, until)) >= BATCH:
                        self.store_rows(*pending.take())
                    if progress is not None:
                        progress(series, detail.stored, detail.pages, expected)
            except ExchangeError:
                self.store_rows(*pending.take())  # what was fetched before the failure is kept
                raise
            # the last batch's cursor goes into the run's final save: one durable write, still
            # after InfluxDB acknowledged the candles (a one-page hourly run writes the state once)
            last_batch = self.store_rows(*pending.take(), save=False)
        done = {"status": "ok", "last_error": None, "last_new_candles": detail.stored}
        self.save(**{**last_batch, **done, "updated_at": self.clock.now_ms()})

    def quarantine(self, rejected: list[Any]) -> None:
        if not rejected:
            return
        self.outcome.detail.rejected += len(rejected)
        for rej in rejected:
            when = iso(rej.ts) if isinstance(rej.ts, int) else rej.ts
            log.warning("%s: rejected candle %s: %s", self.series, when, rej.reason)
        seen_at = self.clock.now_ms()
        append_jsonl(
            quarantine_path(self.state_dir, self.series),
            [
                {"ts": r.ts, "reason": r.reason, "raw": _jsonable(r.raw), "seen_at": seen_at}
                for r in rejected
            ],
        )

    def store_rows(
        self, rows: list[Candle], texts: list[list[str]] | None = None, *, save: bool = True
    ) -> dict[str, object]:
        """Write ``rows``, then move the cursor: saved now, or (``save=False``) the changes to
        the state returned for the caller's next save -- never saved before the write."""
        if not rows:
            return {}
        # test-only: a planted defect saves the cursor first (base/crashpoints.py)
        if_planted(
            "cursor_before_ack",
            save_ingest,
            self.state_dir,
            self.series,
            self.st.evolve(cursor=rows[-1][0]),
        )
        self.store.write(self.series, rows, texts)
        crash_point("ingest.batch_stored", self.series.stem)
        self.outcome.detail.stored += len(rows)
        series_start = self.st.series_start
        if self.learn_start:
            first = rows[0][0]
            series_start = first if series_start is None else min(series_start, first)
            self.learn_start = self.st.cursor is None
        newest = rows[-1][0]
        changes: dict[str, object] = {
            "cursor": max(newest, self.st.cursor or newest),
            "series_start": series_start,
            "updated_at": self.clock.now_ms(),
        }
        if save:
            self.save(**changes)
        return changes


def _jsonable(raw: Any) -> Any:
    if isinstance(raw, list | tuple):
        return [_jsonable(v) for v in raw]
    if isinstance(raw, float) and raw != raw:
        return "NaN"
    if isinstance(raw, float) and raw in (float("inf"), float("-inf")):
        return str(raw)
    if isinstance(raw, str | int | float | bool) or raw is None:
        return raw
    return repr(raw)


def run_ingest(
    job: str,
    series_list: Sequence[Series],
    settings: Settings,
    exchange: Exchange,
    store: CandleStore,
    clock: Clock,
    window: Window = Window(),
    progress: Progress | None = None,
    workers: int = 8,
    then: Callable[[IngestOutcome], None] | None = None,
) -> IngestReport:
    """Ingest every series, ``workers`` at a time. ``then(outcome)`` is called in the worker as
    soon as a series is done (``coinpredict cycle`` starts its forecast there)."""
    report: IngestReport = Report(job)
    if not series_list:
        return report

    def one(series: Series) -> IngestOutcome:
        outcome = ingest_series(series, settings, exchange, store, clock, window, progress)
        if then is not None:
            then(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(series_list)))) as pool:
        futures = [pool.submit(one, s) for s in series_list]
        report.outcomes = [f.result() for f in futures]
    return report
