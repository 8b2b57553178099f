"""Backfill and ingest: page closed candles from the exchange into InfluxDB behind a cursor.

The cursor (open time of the last stored candle) advances only after InfluxDB acknowledged the
page. One failing series never stops the others. Invalid candles are never stored: they are
counted, logged with the reason, and kept in STATE_DIR/quarantine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.crashpoints import crash_point, if_planted
from coinpredict.base.errors import ArtifactError, ExchangeError, StoreError
from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import HOUR_MS, TIMEFRAMES, iso
from coinpredict.local.state import append_jsonl, load_ingest, save_ingest, series_file
from coinpredict.store.candles import CandleStore

log = logging.getLogger("coinpredict.ingest.ingest")

# 1m candles older than (now - window + margin) are never written: InfluxDB would drop them.
RETENTION_MARGIN_MS = HOUR_MS


class Exchange(Protocol):
    """What ingest needs from the exchange adapter (coinpredict.exchange)."""

    exchange_id: str

    def first_candle_ms(self, symbol: str, tf: Any) -> int | None: ...
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
    outcome: SeriesOutcome,
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
        outcome.details["note"] = "the exchange has no candles for this series"
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
) -> SeriesOutcome:
    outcome = SeriesOutcome(series, details={"stored": 0, "pages": 0, "rejected": 0})
    state_dir = settings.state_dir
    tf = series.timeframe
    try:
        st = load_ingest(state_dir, series)
        latest = store.latest_open(series)
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
        now = clock.now_ms()
        start, learned_start = _start(
            series, settings, exchange, cursor, window.since_ms, now, outcome
        )
        if learned_start is not None and st.series_start is None:
            st = st.evolve(series_start=learned_start)
            save_ingest(state_dir, series, st)
        last_closed = tf.last_closed_open(now)
        until = last_closed if window.until_ms is None else min(window.until_ms, last_closed)
        if start is None or start > until:
            st = st.evolve(status="ok", last_error=None, updated_at=now, last_new_candles=0)
            save_ingest(state_dir, series, st)
            outcome.details["cursor"] = st.cursor
            return outcome
        expected = tf.count(start, until)
        retention_floor = (
            now - settings.one_minute_window_ms + RETENTION_MARGIN_MS if tf.code == "1m" else None
        )
        for page in exchange.fetch_closed(series.symbol, tf, start, until):
            outcome.details["pages"] += 1
            if page.rejected:
                outcome.details["rejected"] += len(page.rejected)
                for rej in page.rejected:
                    log.warning(
                        "%s: rejected candle %s: %s",
                        series,
                        iso(rej.ts) if isinstance(rej.ts, int) else rej.ts,
                        rej.reason,
                    )
                append_jsonl(
                    quarantine_path(state_dir, series),
                    [
                        {
                            "ts": rej.ts,
                            "reason": rej.reason,
                            "raw": _jsonable(rej.raw),
                            "seen_at": clock.now_ms(),
                        }
                        for rej in page.rejected
                    ],
                )
            rows = [
                (c.ts, c.open, c.high, c.low, c.close, c.volume)
                for c in page.candles
                if c.ts <= until and (retention_floor is None or c.ts >= retention_floor)
            ]
            if rows:
                # test-only: a planted defect saves the cursor first (base/crashpoints.py)
                if_planted(
                    "cursor_before_ack",
                    save_ingest,
                    state_dir,
                    series,
                    st.evolve(cursor=rows[-1][0]),
                )
                store.write(series, rows)
                crash_point("ingest.batch_stored", series.stem)
                outcome.details["stored"] += len(rows)
                newest = rows[-1][0]
                series_start = st.series_start
                if series_start is None and window.since_ms is None:
                    series_start = rows[0][0]
                st = st.evolve(
                    cursor=max(newest, st.cursor or newest),
                    series_start=series_start,
                    updated_at=clock.now_ms(),
                )
                save_ingest(state_dir, series, st)
            if progress is not None:
                progress(series, outcome.details["stored"], outcome.details["pages"], expected)
        st = st.evolve(
            status="ok",
            last_error=None,
            updated_at=clock.now_ms(),
            last_new_candles=outcome.details["stored"],
        )
        save_ingest(state_dir, series, st)
    except (ExchangeError, StoreError, ArtifactError) as exc:
        outcome.fail(exc.message)
        log.error("%s: %s", series, exc.message)
        try:
            st = load_ingest(state_dir, series)
            save_ingest(
                state_dir,
                series,
                st.evolve(status="failed", last_error=exc.message, updated_at=clock.now_ms()),
            )
        except ArtifactError as inner:
            log.error("%s: cannot record the failure: %s", series, inner.message)
    outcome.details["cursor"] = load_ingest(state_dir, series).cursor if outcome.ok else None
    return outcome


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
    then: Callable[[SeriesOutcome], None] | None = None,
) -> Report:
    """Ingest every series, ``workers`` at a time. ``then(outcome)`` is called in the worker as
    soon as a series is done (``coinpredict cycle`` starts its forecast there)."""
    report = Report(job)
    if not series_list:
        return report

    def one(series: Series) -> SeriesOutcome:
        outcome = ingest_series(series, settings, exchange, store, clock, window, progress)
        if then is not None:
            then(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(series_list)))) as pool:
        futures = [pool.submit(one, s) for s in series_list]
        report.outcomes = [f.result() for f in futures]
    return report
