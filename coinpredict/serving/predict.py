"""``predict``: forecast each non-1m series with its champion (and shadow), store the forecasts.

Only closed candles at or before now are read. A failing series keeps its last good forecast (the
newest one in InfluxDB) and is marked degraded in STATE_DIR/predict. A series without a new closed
candle since its last successful run is skipped (the new-candle trigger), so a cycle with nothing
new costs one small query per series.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, CoinpredictError
from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.local.atomic import read_json, write_json
from coinpredict.local.state import PredictState, load_predict, save_predict, series_file
from coinpredict.serving.outcomes import PredictDetail, PredictOutcome, PredictReport
from coinpredict.serving.windows import read_window
from coinpredict.store.candles import CandleStore
from coinpredict.store.predictions import PredictionStore, StoredForecast

log = logging.getLogger("coinpredict.serving.predict")

# Series forecast at once: their InfluxDB reads overlap each other and the numpy work.
WORKERS = 4


def models_dir(settings: Settings) -> Path:
    return settings.state_dir / "models"


def newest_closed(store: CandleStore, series: Series, now_ms: int) -> int | None:
    """Open time of the newest stored closed candle (one ``LIMIT 1`` query, bounded below by
    the last closed candle's open time: a second, unbounded one when that is not stored)."""
    last_closed = series.timeframe.last_closed_open(now_ms)
    newest = store.latest_open(series, since_ms=last_closed)
    if newest is not None and newest > last_closed:  # never the still-open candle
        frame = store.read(series, end_ms=last_closed, last=1)
        return int(frame["timestamp"][0]) if frame.height else None
    return newest


def read_closed(
    store: CandleStore, series: Series, now_ms: int, horizon: int, purpose: str = "train"
) -> Any:
    """The newest closed candles of a series (never the still-open one), as many as the models
    need for ``purpose`` (train: two fit windows), read as one ascending time range (InfluxDB
    answers that much faster than ``ORDER BY time DESC``)."""
    from coinpredict.forecast import candles_needed
    from coinpredict.store.candles import empty_frame

    tf = series.timeframe
    newest = newest_closed(store, series, now_ms)
    if newest is None:
        return empty_frame()
    need = candles_needed(tf, horizon, purpose)
    return store.read(series, tf.add(newest, -(need - 1)), newest)


def to_stored(series: Series, role: str, fc: Any, issued_at: int) -> StoredForecast:
    return StoredForecast(
        series=series,
        role=role,
        model_name=fc.model_name,
        model_version=str(fc.model_version or "builtin"),
        level=float(fc.level),
        last_closed_ms=int(fc.origin_ms),
        origin_ms=int(fc.timestamps[0]),
        issued_at_ms=issued_at,
        timestamps=tuple(int(t) for t in fc.timestamps),
        close=tuple(fc.close),
        lower=tuple(fc.lower),
        upper=tuple(fc.upper),
        lower_95=tuple(fc.lower_95),
        upper_95=tuple(fc.upper_95),
    )


class Predicted(NamedTuple):
    """One series done by predict."""

    outcome: PredictOutcome
    forecast: StoredForecast | None  # the champion forecast stored (None: skipped or failed)
    window: Any = None  # with a stored forecast: the candles it was made from (``read_window``)


def predict_and_store(
    series: Series,
    settings: Settings,
    store: CandleStore,
    pstore: PredictionStore,
    clock: Clock,
    *,
    force: bool = False,
) -> Predicted:
    """Forecast one series with its champion (and shadow) and store the forecast."""
    from coinpredict.forecast.registry import forecast_with, load_for_series

    outcome = SeriesOutcome(series, PredictDetail())
    stored: StoredForecast | None = None
    frame = None
    tf = series.timeframe
    try:
        previous = load_predict(settings.state_dir, series)
    except ArtifactError as exc:  # unreadable: forecast afresh, which writes a good state again
        log.warning("%s: %s; forecasting as if it had never run", series, exc.message)
        previous = PredictState()
    now = clock.now_ms()
    level = settings.interval_level
    try:
        horizon = settings.policy(tf).horizon
        newest = newest_closed(store, series, now)
        if newest is None:
            raise CoinpredictError("no stored candles (run `coinpredict ingest`)")
        if (
            not force
            and previous.status == "ok"
            and previous.last_new_candle == newest
            # InfluxDB, not the state, has the say: the forecast the state served is stored
            and pstore.newest_origin(series) == previous.last_good_origin
        ):
            outcome.detail.skipped = True  # the new-candle trigger: nothing to do
            return Predicted(outcome, None)
        ref, model = load_for_series(models_dir(settings), series.symbol, tf, horizon, level)
        shadow = _load_shadow(series, settings, horizon, outcome)
        # read only what the models use (the built-in naive: its whole fit window), and of that
        # only what is new since the last run (coinpredict.serving.windows)
        rows = max(m.predict_rows() for m in (model, *([shadow[1]] if shadow else [])))
        frame = read_window(
            store, series, tf.add(newest, -(rows - 1)), newest, settings.state_dir, now
        )
        fc = forecast_with(ref, model, frame, horizon, level)
        fc.check()
        fc = calibrate_online(settings.state_dir, series, str(ref.version), frame, fc).check()
        if fc.origin_ms != newest or fc.timestamps[0] != tf.close_time(newest):
            raise CoinpredictError(
                f"model answered for {iso(fc.origin_ms)}, expected {iso(newest)}"
            )
        stored = to_stored(series, "champion", fc, clock.now_ms())
        pstore.write(stored)
        outcome.detail.last_closed_candle = iso(newest)
        outcome.detail.model = fc.model_name
        outcome.detail.version = stored.model_version
        save_predict(
            settings.state_dir,
            series,
            PredictState(
                status="ok",
                at=clock.now_ms(),
                last_good_origin=stored.origin_ms,
                last_new_candle=newest,
            ),
        )
        if shadow is not None:
            _shadow(
                series, shadow, frame, horizon, level, pstore, clock, outcome, settings.state_dir
            )
    except (CoinpredictError, ValueError) as exc:
        reason = exc.message if isinstance(exc, CoinpredictError) else f"invalid forecast: {exc}"
        outcome.fail(reason)
        log.error("%s: predict failed, last good forecast kept (degraded): %s", series, reason)
        failed = PredictState(
            status="failed",
            reason=reason,
            at=clock.now_ms(),
            last_good_origin=previous.last_good_origin,
            last_new_candle=previous.last_new_candle,
        )
        try:
            save_predict(settings.state_dir, series, failed)
        except ArtifactError as inner:  # e.g. the state disk is full: the outcome still says why
            log.error("%s: cannot record the failure: %s", series, inner.message)
    return Predicted(outcome, stored, frame) if outcome.ok else Predicted(outcome, None)


#: The state-dir area of each role's online calibration state.
CALIBRATION_AREAS = {"champion": "calibration", "shadow": "calibration-shadow"}


def calibration_path(state_dir: Path, series: Series, role: str = "champion") -> Path:
    return series_file(state_dir, CALIBRATION_AREAS[role], series)


def load_calibration(state_dir: Path, series: Series, role: str = "champion") -> Any:
    """The series' online calibration state of ``role``, or None when there is none that can be
    read (a torn or foreign file means starting afresh, never an error)."""
    from coinpredict.forecast.online import OnlineState, unpack_state

    path = calibration_path(state_dir, series, role)
    try:
        return OnlineState.from_json(unpack_state(read_json(path)))
    except FileNotFoundError:
        return None
    except (ArtifactError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: online calibration state unreadable, starting afresh: %s", series, exc)
        return None


def calibrate_online(
    state_dir: Path, series: Series, version: str, frame: Any, fc: Any, role: str = "champion"
) -> Any:
    """The forecast of ``role``'s model with its bands recalibrated online
    (coinpredict.forecast.online): first every forecast served earlier whose candle has closed
    since the last run is scored, then the new one is adjusted and remembered. Champion and
    shadow keep a state each, and a state belongs to one model version: a promoted shadow goes
    on from the state it built as the shadow; any other promotion or a rollback starts afresh."""
    from coinpredict.forecast.online import OnlineState, pack_state, params

    eta, bound, eta_common = params(series.timeframe.code)
    state = load_calibration(state_dir, series, role)
    if (state is None or not state.fits(version, fc.horizon, fc.level)) and role == "champion":
        state = load_calibration(state_dir, series, "shadow")  # the promoted shadow's own
    if state is None or not state.fits(version, fc.horizon, fc.level):
        state = OnlineState.fresh(version, fc.horizon, fc.level)
    if state.pending:
        first = min(p.timestamps[0] for p in state.pending)
        stamps = frame["timestamp"].to_numpy()  # ascending: the candles since ``first``
        at = int(stamps.searchsorted(first))
        closes = dict(
            zip(stamps[at:].tolist(), frame["close"].to_numpy()[at:].tolist(), strict=True)
        )
        state.observe(closes, fc.origin_ms, eta, bound, eta_common)
    served = state.serve(fc)
    path = calibration_path(state_dir, series, role)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, pack_state(state.to_json()), indent=None)  # written by every predict
    except (OSError, ArtifactError) as exc:  # served uncalibrated-by-this-run next time
        log.warning("%s: cannot keep the online calibration: %s", series, exc)
    return served


def _load_shadow(
    series: Series, settings: Settings, horizon: int, outcome: PredictOutcome
) -> tuple[Any, Any] | None:
    """The series' shadow (ref, model), or None: none registered, or it cannot be loaded
    (noted in the outcome; a shadow never degrades the series)."""
    from coinpredict.forecast.registry import Registry, load_for_series

    if Registry(models_dir(settings), series.symbol, series.timeframe).shadow() is None:
        return None
    try:
        return load_for_series(
            models_dir(settings),
            series.symbol,
            series.timeframe,
            horizon,
            settings.interval_level,
            role="shadow",
        )
    except CoinpredictError as exc:
        outcome.detail.shadow_error = exc.message
        log.warning("%s: shadow model unusable: %s", series, exc.message)
        return None


def _shadow(
    series: Series,
    shadow: tuple[Any, Any],
    frame: Any,
    horizon: int,
    level: float,
    pstore: PredictionStore,
    clock: Clock,
    outcome: PredictOutcome,
    state_dir: Path,
) -> None:
    """Shadow forecasts are stored for scoring, never served; their failure degrades nothing.
    They are calibrated online like the champion's (their own state), so that the two are
    compared on what each would serve."""
    from coinpredict.forecast.registry import forecast_with

    try:
        fc = forecast_with(shadow[0], shadow[1], frame, horizon, level)
        fc.check()
        fc = calibrate_online(state_dir, series, str(shadow[0].version), frame, fc, "shadow")
        fc.check()
        pstore.write(to_stored(series, "shadow", fc, clock.now_ms()))
        outcome.detail.shadow = str(fc.model_version)
    except (CoinpredictError, ValueError) as exc:
        outcome.detail.shadow_error = str(exc)
        log.warning("%s: shadow forecast failed: %s", series, exc)


class PredictQueue:
    """Forecasts series as they are handed in, ``WORKERS`` at a time.

    ``run_predict`` hands in every series at once; ``coinpredict cycle`` hands each one in as
    soon as its ingest is done. ``after(predicted)`` runs in the worker when a series is done.
    """

    def __init__(
        self,
        settings: Settings,
        store: CandleStore,
        pstore: PredictionStore,
        clock: Clock,
        *,
        force: bool = False,
        after: Callable[[Predicted], None] | None = None,
    ) -> None:
        self._args = (settings, store, pstore, clock)
        self._force = force
        self._after = after
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="predict")
        self._futures: dict[Series, Future[PredictOutcome]] = {}
        self._lock = threading.Lock()

    def submit(self, series: Series) -> None:
        """Forecast ``series`` (once; 1m series are never forecast)."""
        if series.timeframe.code == "1m":
            return
        with self._lock:
            if series not in self._futures:
                self._futures[series] = self._pool.submit(self._one, series)

    def _one(self, series: Series) -> PredictOutcome:
        done = predict_and_store(series, *self._args, force=self._force)
        if self._after is not None:
            self._after(done)
        return done.outcome

    def report(self) -> PredictReport:
        """Wait for every submitted series; outcomes in the order they were handed in."""
        with self._lock:
            futures = list(self._futures.values())
        report: PredictReport = Report("predict")
        report.outcomes = [f.result() for f in futures]
        skipped = sum(1 for o in report.outcomes if o.detail.skipped)
        report.notes.append(
            f"{skipped} of {len(report.outcomes)} series skipped: no new closed candle"
        )
        return report

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> PredictQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_predict(
    series_list: list[Series],
    settings: Settings,
    store: CandleStore,
    pstore: PredictionStore,
    clock: Clock,
    *,
    force: bool = False,
) -> PredictReport:
    with PredictQueue(settings, store, pstore, clock, force=force) as queue:
        for series in series_list:
            queue.submit(series)
        return queue.report()
