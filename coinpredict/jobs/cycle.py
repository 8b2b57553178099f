"""``coinpredict cycle``: one candle cycle -- ingest, predict, export -- in one process.

The same three jobs as the commands ``ingest``, ``predict`` and ``export``, each with its own
locks and run record (``status`` shows them as usual), but overlapped: a series is forecast as
soon as its ingest is done, and read for export as soon as its forecast is stored. So predict
and export run while ingest waits on the exchange's rate limit instead of after it, and the
cycle pays the heavy imports once instead of three times.

A failing stage never stops the next: predict runs when ingest failed (series without a new
candle are skipped) and export always runs, so the published freshness is the real one. Only a
configuration error (exit 2) stops the cycle before it starts.

Exit code: the worst of the stages', in the order 1 (failed), 4 (partial), 0.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coinpredict.base.clock import Clock, SystemClock
from coinpredict.base.config import Settings
from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import CoinpredictError, ExitCode
from coinpredict.base.outcomes import outcome_word, worst
from coinpredict.base.series import Series
from coinpredict.exchange import connect as exchange_connect
from coinpredict.health.freshness import SeriesFacts
from coinpredict.store import connect

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.ingest.outcomes import IngestOutcome, IngestReport
    from coinpredict.jobs.runner import JobRun
    from coinpredict.publish.export import ExportResult
    from coinpredict.serving.outcomes import PredictReport
    from coinpredict.serving.predict import Predicted, PredictQueue
    from coinpredict.store.latest import CandleRow
    from coinpredict.store.predictions import StoredForecast

STAGES = ("ingest", "predict", "export")

log = logging.getLogger("coinpredict.jobs.cycle")


@dataclass
class CycleResult:
    ingest: IngestReport | None = None
    predict: PredictReport | None = None
    export: ExportResult | None = None
    errors: dict[str, CoinpredictError] = field(default_factory=dict)  # stage -> why it failed
    # stage -> seconds from the cycle's start until the stage was done (the stages overlap)
    done_s: dict[str, float] = field(default_factory=dict)

    def stage_code(self, stage: str) -> int:
        if stage in self.errors:  # a stage that could not run or crashed failed as a whole
            return int(ExitCode.FAILURE)
        done = getattr(self, stage)
        return int(done.exit_code) if done is not None else int(ExitCode.OK)

    @property
    def exit_code(self) -> int:
        return int(worst(self.stage_code(s) for s in STAGES))

    @property
    def outcome(self) -> str:
        return outcome_word(self.exit_code)

    def as_dict(self) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        for stage in STAGES:
            done = getattr(self, stage)
            entry = done.as_dict() if done is not None else {"job": stage}
            if stage in self.errors:
                entry.update(outcome="failed", error=self.errors[stage].message)
            entry["exit_code"] = self.stage_code(stage)
            entry["done_s"] = round(self.done_s.get(stage, 0.0), 3)
            stages[stage] = entry
        return {
            "job": "cycle",
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "stages": stages,
        }


class _ExportReads:
    """Facts of series read for export as soon as their ingest and predict are done: in the
    thread that handed the series in (a predict or ingest worker), on that thread's keep-alive
    connection of one shared client (no thread pool, no new connection per series)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        from coinpredict.health.collect import health_http

        self._settings = settings
        self._clock = clock
        self._http = health_http(settings)
        self._lock = threading.Lock()
        self.facts: dict[Series, SeriesFacts] = {}

    def predicted(self, done: Predicted) -> None:
        """A series predict is done with. The forecast it stored (InfluxDB acknowledged it) is
        used as read, and so is the newest part of the window it forecast from: the candles
        that InfluxDB holds, as ``read_window`` checked them in this run (their count over the
        cached part, the new ones read), so the history is not read again."""
        from coinpredict.serving.windows import newest_rows

        history = None
        if done.forecast is not None and done.window is not None:
            history = newest_rows(done.window, self._settings.history_candles)
        self.read(done.outcome.series, done.forecast, history)

    def read(
        self,
        series: Series,
        forecast: StoredForecast | None = None,
        history: list[CandleRow] | None = None,
    ) -> None:
        """``forecast``, ``history``: the series' newest forecast and candle history, known
        already (not asked for again)."""
        from coinpredict.publish.artifacts import candles_json
        from coinpredict.publish.export import collect_for_export

        got = collect_for_export(
            self._settings,
            [series],
            http=self._http,
            threads=1,
            forecasts={series: forecast} if forecast is not None else None,
            candles={series: history} if history is not None else None,
            now_ms=self._clock.now_ms(),
        )
        if got.store_error is not None:  # InfluxDB trouble: export reads the series again itself
            return
        facts = got.facts[0]
        if facts.history:
            candles_json(facts.history)  # formatted now, while ingest waits on the exchange
        with self._lock:
            self.facts[series] = facts


def run_cycle(
    settings: Settings,
    *,
    stages: Settings | None = None,
    clock: Clock | None = None,
    exchange: ExchangeAdapter | None = None,
) -> CycleResult:
    """Ingest and predict the series of ``stages`` (default: ``settings``), then export every
    configured series of ``settings`` (a full export: manifest.json and status.json cover all
    timeframes, as ``coinpredict export`` does)."""
    from coinpredict.jobs.runner import run_export_job

    stages = stages or settings
    clk = clock or SystemClock()
    adapter = exchange or exchange_connect.exchange(stages, clk)  # a bad exchange id stops us here
    result = CycleResult()
    reads = _ExportReads(settings, clk)
    started = time.monotonic()
    try:
        try:
            _ingest_and_predict(stages, clk, adapter, reads, result, started)
        except Exception as exc:  # noqa: BLE001 - predict crashed (its record says so): export runs
            result.errors.setdefault("predict", _crashed("predict", exc))
        result.done_s["predict"] = time.monotonic() - started
        crash_point("cycle.before_export")
        try:
            result.export = run_export_job(settings, clk, ready=reads.facts)
        except CoinpredictError as exc:  # InfluxDB down, export dir unwritable or full, top:N
            result.errors["export"] = exc
        result.done_s["export"] = time.monotonic() - started
    finally:
        if exchange is None:
            adapter.close()  # after export: closing waits for a clock probe still retrying
    return result


def _ingest_and_predict(
    stages: Settings,
    clk: Clock,
    adapter: ExchangeAdapter,
    reads: _ExportReads,
    result: CycleResult,
    started: float,
) -> None:
    """Ingest, handing each series to predict as soon as it is in. Predict's locks and run
    record span the ingest; with only 1m selected nothing is forecast and no run is recorded."""
    from coinpredict.ingest.universe import resolve_symbols, series_for
    from coinpredict.jobs.runner import predict_locks, run_candle_job

    with ExitStack() as stack:
        queue, run = (
            _start_predict(stack, stages, clk, reads, result)
            if predict_locks(stages)
            else (None, None)
        )

        def ingested(outcome: IngestOutcome) -> None:
            if outcome.series.timeframe.code == "1m":
                reads.read(outcome.series)  # never forecast: its export facts are final now
            elif queue is not None:
                queue.submit(outcome.series)

        try:
            result.ingest = run_candle_job(
                "ingest", stages, clock=clk, exchange=adapter, then=ingested
            )
        except CoinpredictError as exc:  # lock busy, InfluxDB down, state dir unwritable
            result.errors["ingest"] = exc
        except Exception as exc:  # noqa: BLE001 - a defect: logged, reported, export runs
            result.errors["ingest"] = _crashed("ingest", exc)
        result.done_s["ingest"] = time.monotonic() - started
        crash_point("cycle.ingest_done")
        if queue is None or run is None:
            return
        try:  # series ingest did not hand in (it could not start): forecast them too
            for series in series_for(stages, resolve_symbols(stages, clk, None)):
                queue.submit(series)
        except CoinpredictError as exc:  # top:N never fetched, a corrupt universe file
            result.errors["predict"] = exc
        error = result.errors.get("predict")
        result.predict = run.finish(queue.report(), error.message if error else None)


def _crashed(stage: str, exc: Exception) -> CoinpredictError:
    """An unexpected exception in a stage: logged with its traceback (it is a defect to fix),
    reported as that stage's failure so that the cycle goes on to export."""
    log.error("%s crashed", stage, exc_info=exc)
    return CoinpredictError(f"{stage} crashed: {type(exc).__name__}: {exc}")


def _start_predict(
    stack: ExitStack, stages: Settings, clk: Clock, reads: _ExportReads, result: CycleResult
) -> tuple[PredictQueue | None, JobRun | None]:
    """Enter predict's job (locks, run record) and its queue on ``stack`` -> (queue, run);
    (None, None), the error noted in ``result``, when it cannot start (e.g. another predict
    holds the lock)."""
    from coinpredict.jobs.runner import job_run, predict_locks
    from coinpredict.serving.predict import PredictQueue
    from coinpredict.store.predictions import PredictionStore

    try:
        run = stack.enter_context(job_run(stages, "predict", clk, predict_locks(stages)))
    except CoinpredictError as exc:
        result.errors["predict"] = exc
        return None, None
    http = connect.influx(stages)
    queue = stack.enter_context(
        PredictQueue(
            stages,
            connect.candle_store(stages, http),
            PredictionStore(http, db=stages.influx_db),
            clk,
            after=reads.predicted,
        )
    )
    return queue, run
