"""Gap detection and refill on the timeframe grid.

Stored open times (only the time column is read) are compared with the grid from the series start
(the first candle the exchange returned, remembered by backfill, so a deleted first candle is
found too) to the last closed candle. ``refill`` refetches each missing range; grid points the
exchange answered for without a candle are recorded as confirmed exchange gaps in
STATE_DIR/gaps and not refetched again unless ``recheck`` is set.

Timeframes of a day or less that divide a day (1m, 1h) are scanned cheaply: InfluxDB counts the
stored candles per UTC day, and open times are read only for the days whose count is below the
grid's; a complete day stands for its grid points. Candles are written at exchange open times,
which lie on the grid, so the result is the full scan's (tests/test_gaps.py compares the two).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, ExchangeError, StoreError
from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import Timeframe, iso
from coinpredict.ingest.ingest import Exchange, retention_start
from coinpredict.ingest.outcomes import GapsDetail, GapsReport
from coinpredict.local import atomic
from coinpredict.local.state import ensure_dir, load_ingest, save_ingest, series_file
from coinpredict.store.candles import CandleStore, day_counts, timestamps_in

log = logging.getLogger("coinpredict.ingest.gaps")


@dataclass(frozen=True, order=True)
class Range:
    """Missing open times ``first..last`` (inclusive, on the grid)."""

    first: int
    last: int
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": iso(self.first),
            "last": iso(self.last),
            "count": self.count,
            "first_ms": self.first,
            "last_ms": self.last,
        }


def missing_ranges(stored: np.ndarray, tf: Timeframe, start: int, end: int) -> list[Range]:
    """Grid points in [start, end] absent from ``stored`` (sorted int64 open times)."""
    if start > end:
        return []
    stored = stored[(stored >= start) & (stored <= end)]
    if tf.is_monthly:
        have = set(stored.tolist())
        out: list[Range] = []
        run: list[int] = []
        for t in tf.grid(start, end):
            if t in have:
                if run:
                    out.append(Range(run[0], run[-1], len(run)))
                    run = []
            else:
                run.append(t)
        if run:
            out.append(Range(run[0], run[-1], len(run)))
        return out
    step = tf.step_ms
    first = tf.floor(start) if tf.is_aligned(start) else tf.add(tf.floor(start), 1)
    last = tf.floor(end)
    points = np.concatenate(([first - step], np.unique(stored), [last + step]))
    diffs = np.diff(points)
    holes = np.nonzero(diffs > step)[0]
    return [
        Range(int(points[i] + step), int(points[i + 1] - step), int(diffs[i] // step - 1))
        for i in holes
    ]


DAY_MS = 86_400_000


def stored_open_times(series: Series, store: CandleStore, start: int, end: int) -> np.ndarray:
    """The stored open times in [start, end] as gap detection needs them (sorted int64): read
    from InfluxDB for 1d and longer timeframes; for shorter ones, counted per day first and read
    only for the days with fewer candles than the grid has (complete days are their grid)."""
    tf = series.timeframe
    step = tf.step_ms
    if tf.is_monthly or step >= DAY_MS or DAY_MS % step:
        return store.timestamps(series, start, end)
    first = start if start % step == 0 else (start // step + 1) * step
    last = end // step * step
    if first > last:
        return np.empty(0, dtype=np.int64)
    counts = day_counts(store, series, first, last)
    complete: list[np.ndarray] = []
    to_read: list[tuple[int, int]] = []
    for day in range(first // DAY_MS * DAY_MS, last + 1, DAY_MS):
        lo, hi = max(first, day), min(last, day + DAY_MS - step)
        have = counts.get(day, 0)
        if have == 0:
            continue  # nothing stored that day: all of it is missing, nothing to read
        if have == (hi - lo) // step + 1:
            complete.append(np.arange(lo, hi + step, step, dtype=np.int64))
        elif to_read and to_read[-1][1] + step == lo:
            to_read[-1] = (to_read[-1][0], hi)  # a run of incomplete days: one SELECT
        else:
            to_read.append((lo, hi))
    parts = [*complete, timestamps_in(store, series, to_read)] if to_read else complete
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def gaps_path(state_dir: Path, series: Series) -> Path:
    return series_file(state_dir, "gaps", series)


def load_exchange_gaps(state_dir: Path, series: Series) -> list[dict[str, int]]:
    try:
        data = atomic.read_json(gaps_path(state_dir, series))
    except FileNotFoundError:
        return []
    gaps = data.get("exchange_gaps") if isinstance(data, dict) else None
    if not isinstance(gaps, list):
        raise ArtifactError(f"{gaps_path(state_dir, series)} is not a valid gap record")
    return gaps


def save_exchange_gaps(state_dir: Path, series: Series, gaps: list[dict[str, int]]) -> None:
    path = gaps_path(state_dir, series)
    ensure_dir(path.parent)
    gaps = sorted({g["first"]: g for g in gaps}.values(), key=lambda g: g["first"])
    atomic.write_json(path, {"exchange_gaps": gaps})


def _split_known(
    missing: list[Range], known: list[dict[str, int]], tf: Timeframe
) -> tuple[list[Range], list[Range]]:
    """Separate missing ranges into (still to fill, confirmed exchange gaps)."""
    if not known:
        return missing, []
    known_points: set[int] = set()
    for g in known:
        known_points.update(tf.grid(g["first"], g["last"]))
    todo: list[Range] = []
    confirmed: list[Range] = []
    for r in missing:
        if r.count > 100_000:  # far too many for an exchange gap record: never all confirmed
            todo.append(r)
            continue
        for bucket, wanted in ((todo, False), (confirmed, True)):
            run: list[int] = []
            for t in tf.grid(r.first, r.last):
                if (t in known_points) == wanted:
                    run.append(t)
                elif run:
                    bucket.append(Range(run[0], run[-1], len(run)))
                    run = []
            if run:
                bucket.append(Range(run[0], run[-1], len(run)))
    return sorted(todo), sorted(confirmed)


@dataclass
class SeriesGaps:
    series: Series
    start: int | None
    end: int
    missing: list[Range] = field(default_factory=list)
    exchange_gaps: list[Range] = field(default_factory=list)
    refilled: int = 0
    newly_confirmed: list[Range] = field(default_factory=list)


def detect_series(
    series: Series, settings: Settings, store: CandleStore, clock: Clock, *, recheck: bool = False
) -> SeriesGaps:
    tf = series.timeframe
    now = clock.now_ms()
    end = tf.last_closed_open(now)
    st = load_ingest(settings.state_dir, series)
    start = st.series_start if st.series_start is not None else store.first_open(series)
    if start is not None and tf.code == "1m":
        start = max(start, retention_start(settings, now))
    result = SeriesGaps(series, start, end)
    if start is None:
        return result
    stamps = stored_open_times(series, store, start, end)
    missing = missing_ranges(stamps, tf, start, end)
    known = [] if recheck else load_exchange_gaps(settings.state_dir, series)
    result.missing, result.exchange_gaps = _split_known(missing, known, tf)
    return result


def refill_series(
    found: SeriesGaps, settings: Settings, exchange: Exchange, store: CandleStore, clock: Clock
) -> None:
    series = found.series
    tf = series.timeframe
    confirmed: list[dict[str, int]] = []
    for r in found.missing:
        got: set[int] = set()
        answered: list[tuple[int, int]] = []
        for page in exchange.fetch_closed(series.symbol, tf, r.first, r.last):
            rows, texts = page.between(r.first, r.last)
            if rows:
                store.write(series, rows, texts)
                found.refilled += len(rows)
                got.update(row[0] for row in rows)
            if not page.rejected:
                answered.append((max(page.start_ms, r.first), min(page.end_ms, r.last)))
        for lo, hi in answered:
            still = missing_ranges(np.fromiter(sorted(got), dtype=np.int64), tf, lo, hi)
            for gap in still:
                confirmed.append(
                    {
                        "first": gap.first,
                        "last": gap.last,
                        "count": gap.count,
                        "confirmed_at": clock.now_ms(),
                    }
                )
                found.newly_confirmed.append(gap)
    if confirmed:
        existing = load_exchange_gaps(settings.state_dir, series)
        save_exchange_gaps(settings.state_dir, series, existing + confirmed)
        log.info("%s: %d range(s) confirmed as exchange gaps", series, len(confirmed))
    st = load_ingest(settings.state_dir, series)
    latest = store.latest_open(series)
    if latest is not None and (st.cursor is None or latest > st.cursor):
        save_ingest(settings.state_dir, series, st.evolve(cursor=latest))


def run_detect(
    series_list: list[Series],
    settings: Settings,
    store: CandleStore,
    clock: Clock,
    *,
    exchange: Exchange | None = None,
    recheck: bool = False,
    refill_guard: Callable[[Series], AbstractContextManager[object]] = nullcontext,
) -> tuple[GapsReport, list[SeriesGaps]]:
    """Scan every series (read only, no lock); with ``exchange``, refill the series with missing
    candles afterwards, each inside its own ``refill_guard(series)`` (the refill's locks), and
    scan it again there. A scan is long (180 days of 1m), a series' refill usually short: the
    locks that keep cycles waiting are held only while one series' candles are fetched and
    written, so a cycle waiting for them runs between two series."""
    report: GapsReport = Report("detect-gaps")
    found_all: list[SeriesGaps] = []
    for series in series_list:
        outcome = SeriesOutcome(series, GapsDetail())
        report.outcomes.append(outcome)
        try:
            found_all.append(detect_series(series, settings, store, clock, recheck=recheck))
        except (StoreError, ArtifactError) as exc:
            _failed(outcome, exc)
    by_series = {o.series: o for o in report.outcomes}
    if exchange is not None:
        for found in found_all:
            if not found.missing:
                continue
            with refill_guard(found.series):  # per series: a waiting cycle gets the lock between
                try:
                    refill_series(found, settings, exchange, store, clock)
                    after = detect_series(found.series, settings, store, clock)
                    found.missing, found.exchange_gaps = after.missing, after.exchange_gaps
                except (ExchangeError, StoreError, ArtifactError) as exc:
                    _failed(by_series[found.series], exc)
    for found in found_all:
        outcome = by_series[found.series]
        if outcome.ok:
            outcome.detail = GapsDetail(
                missing=sum(r.count for r in found.missing),
                exchange_gaps=sum(r.count for r in found.exchange_gaps),
                refilled=found.refilled,
            )
    return report, found_all


def _failed(
    outcome: SeriesOutcome[GapsDetail], exc: ExchangeError | StoreError | ArtifactError
) -> None:
    outcome.fail(exc.message)
    log.error("%s: %s", outcome.series, exc.message)


def gaps_json(report: GapsReport, found: list[SeriesGaps]) -> dict[str, Any]:
    by_series = {f.series: f for f in found}
    out = []
    for o in report.outcomes:
        f = by_series.get(o.series)
        out.append(
            {
                "symbol": o.series.symbol,
                "timeframe": o.series.timeframe.code,
                "ok": o.ok,
                "error": o.error,
                "start": iso(f.start) if f and f.start is not None else None,
                "end": iso(f.end) if f else None,
                "missing": [r.as_dict() for r in f.missing] if f else [],
                "missing_candles": sum(r.count for r in f.missing) if f else 0,
                "exchange_gaps": [r.as_dict() for r in f.exchange_gaps] if f else [],
                "exchange_gap_candles": sum(r.count for r in f.exchange_gaps) if f else 0,
                "refilled": f.refilled if f else 0,
            }
        )
    return {"outcome": report.outcome, "series": out}
