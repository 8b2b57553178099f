"""Job runners shared by the CLI and tests: locks + run record + the core work + metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from coinpredict.base.clock import Clock, SystemClock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, ConfigError
from coinpredict.base.outcomes import DetailT, Report, RunSummary, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.exchange import connect as exchange_connect
from coinpredict.ingest.ingest import Progress, Window, run_ingest
from coinpredict.ingest.outcomes import GapsReport, IngestOutcome, IngestReport
from coinpredict.ingest.universe import resolve_symbols, series_for
from coinpredict.local.runs import HISTORY, RunRecord, recorded_run

if TYPE_CHECKING:
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.forecast.registry import Gate
    from coinpredict.health.freshness import Evaluation, SeriesFacts
    from coinpredict.health.monitor import MonitorResult, Poster
    from coinpredict.ingest.gaps import SeriesGaps
    from coinpredict.publish.export import ExportResult
    from coinpredict.serving.outcomes import PredictReport, RegistryDetail, TrainDetail
    from coinpredict.store.candles import CandleStore

from coinpredict.store import connect

R = TypeVar("R", bound="Summarised")


def candle_locks(settings: Settings) -> list[str]:
    """Candle writers (backfill, ingest, detect-gaps --refill) lock per timeframe."""
    return [f"candles-{tf.code}" for tf in settings.timeframes]


def predict_locks(settings: Settings) -> list[str]:
    """predict locks per forecast timeframe (1m is never forecast)."""
    return [f"predict-{tf.code}" for tf in settings.timeframes if tf.code != "1m"]


class Summarised(Protocol):
    """A job's result: it says what goes into its run record."""

    def summary(self) -> RunSummary: ...


@dataclass
class JobRun:
    """One run in progress: its record, and the evaluation the metrics refresh can reuse."""

    record: RunRecord
    evaluation: Evaluation | None = None
    histories: dict[str, list[dict[str, Any]]] | None = None  # run records read during the run

    def finish(self, report: Report[DetailT], error: str | None = None) -> Report[DetailT]:
        """Copy a per-series report into the run record (``error``: the run failed as a whole
        although it reports some series)."""
        self.record.fill(report.summary(error))
        return report

    def finish_with(self, result: R) -> R:
        self.record.fill(result.summary())
        return result


@contextmanager
def job_run(settings: Settings, name: str, clock: Clock, locks: list[str]) -> Iterator[JobRun]:
    """Run under the job's locks with a run record; refresh the Prometheus textfile after.

    Every job goes through here: backfill, ingest, detect-gaps, predict, train, models
    promote/rollback, export and monitor.
    """
    run: JobRun | None = None
    refused = False  # a planted link or unusable lock/record file: reported once, by the job
    try:
        with recorded_run(
            settings.state_dir, name, clock, locks=locks, wait_ms=settings.lock_wait_ms
        ) as record:
            run = JobRun(record)
            yield run
    except ArtifactError:
        refused = run is None
        raise
    finally:
        from coinpredict.health.metrics import write_textfile

        if not refused:
            write_textfile(
                settings,
                clock,
                run.evaluation if run else None,
                evaluate=False,
                histories=_with_own_record(run, name),
            )


def _with_own_record(run: JobRun | None, name: str) -> dict[str, list[dict[str, Any]]] | None:
    """The run records the job read, with its own record (appended when the run ended)
    added, so the metrics refresh need not read every history again."""
    if run is None or run.histories is None:
        return None
    own = [*run.histories.get(name, []), run.record.as_dict()][-HISTORY:]
    return {**run.histories, name: own}


def run_export_job(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    narrowed: bool = False,
    force: bool = False,
    ready: Mapping[Series, SeriesFacts] | None = None,
) -> ExportResult:
    """``export`` under the ``export`` lock with a run record, then the metrics refresh."""
    from coinpredict.publish.export import export_once

    with job_run(settings, "export", clock, ["export"]) as run:
        result = export_once(settings, clock, series, narrowed=narrowed, force=force, ready=ready)
        run.evaluation = result.evaluation
        run.histories = result.histories
        return run.finish_with(result)


def run_monitor_job(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    post: Poster | None = None,
) -> MonitorResult:
    """``monitor`` under the ``monitor`` lock with a run record, then the metrics refresh."""
    from coinpredict.health.monitor import monitor_once, post_json

    with job_run(settings, "monitor", clock, ["monitor"]) as run:
        result = monitor_once(settings, clock, series, post=post or post_json)
        run.evaluation = result.evaluation
        return run.finish_with(result)


def run_candle_job(
    job: str,
    settings: Settings,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    clock: Clock | None = None,
    exchange: ExchangeAdapter | None = None,
    progress: Progress | None = None,
    then: Callable[[IngestOutcome], None] | None = None,
) -> IngestReport:
    """backfill / ingest every configured series; ``then(outcome)`` as each series is done."""
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise ConfigError(f"--since {iso(since_ms)} is not before --until {iso(until_ms)}")
    clk = clock or SystemClock()
    # a bad exchange id stops us here
    adapter = exchange or exchange_connect.exchange(settings, clk)
    try:
        with job_run(settings, job, clk, candle_locks(settings)) as run:
            symbols = resolve_symbols(settings, clk, adapter.quote_volumes)
            window = Window(since_ms, None if until_ms is None else until_ms - 1)
            report = run_ingest(
                job,
                series_for(settings, symbols),
                settings,
                adapter,
                connect.candle_store(settings),
                clk,
                window,
                progress,
                then=then,
            )
            return run.finish(report)
    finally:
        if exchange is None:
            adapter.close()


def run_gaps_job(
    settings: Settings,
    *,
    refill: bool,
    recheck: bool = False,
    clock: Clock | None = None,
    exchange: ExchangeAdapter | None = None,
) -> tuple[GapsReport, list[SeriesGaps]]:
    from coinpredict.ingest.gaps import run_detect

    clk = clock or SystemClock()
    adapter = exchange
    if refill and adapter is None:
        adapter = exchange_connect.exchange(settings, clk)
    try:
        # the scan holds no lock; only the refill takes the cycle lock and the candle locks
        with job_run(settings, "detect-gaps", clk, []) as run:
            symbols = resolve_symbols(settings, clk, None)
            report, found = run_detect(
                series_for(settings, symbols),
                settings,
                connect.candle_store(settings),
                clk,
                exchange=adapter if refill else None,
                recheck=recheck,
                refill_guard=lambda series: refill_locks(settings, series),
            )
            run.finish(report)
    finally:
        if adapter is not None and exchange is None:
            adapter.close()
    return report, found


CYCLE_LOCK = ".lock-cycle"  # STATE_DIR/.lock-cycle: the flock(1) the systemd cycle units take
CYCLE_LOCK_1M = ".lock-cycle-1m"  # the 1m cycle's own: it never waits behind the 00:00:30 chain
CYCLE_LOCK_WAIT_MS = 900_000  # as long as detect-gaps used to wait for it in its unit


def cycle_lock(tf_code: str) -> str:
    """The lock file (in STATE_DIR) that the cycle unit of a timeframe takes with flock(1): the
    1m cycle has its own, every other timeframe shares one, so the cycles that fire together at
    00:00:30 run one after another while the 1m cycle of the next minute runs beside them."""
    return CYCLE_LOCK_1M if tf_code == "1m" else CYCLE_LOCK


@contextmanager
def refill_locks(settings: Settings, series: Series) -> Iterator[None]:
    """What ``detect-gaps --refill`` holds while it refills ``series``: the lock of that
    timeframe's cycle unit (so it never fetches at the same time as that cycle's ingest), then
    the candle writers' locks."""
    from coinpredict.local.locks import file_lock, job_locks

    lock = cycle_lock(series.timeframe.code)
    with (
        file_lock(settings.state_dir / lock, CYCLE_LOCK_WAIT_MS, "cycle"),
        job_locks(
            settings.state_dir / "locks",
            candle_locks(settings),
            wait_ms=settings.lock_wait_ms,
            job="detect-gaps",
        ),
    ):
        yield


def run_predict_job(
    settings: Settings, *, force: bool = False, clock: Clock | None = None
) -> PredictReport:
    from coinpredict.serving.predict import run_predict
    from coinpredict.store.predictions import PredictionStore

    clk = clock or SystemClock()
    with job_run(settings, "predict", clk, predict_locks(settings)) as run:
        http = connect.influx(settings)
        symbols = resolve_symbols(settings, clk, None)
        return run.finish(
            run_predict(
                series_for(settings, symbols, predictable=True),
                settings,
                connect.candle_store(settings, http),
                PredictionStore(http, db=settings.influx_db),
                clk,
                force=force,
            )
        )


def _each_model_series(
    settings: Settings,
    name: str,
    clock: Clock | None,
    one: Callable[[Series], SeriesOutcome[DetailT]],
) -> Report[DetailT]:
    """``one(series)`` for every forecast series under the train lock (the registry does not
    lock itself: train, promote and rollback all change it)."""
    clk = clock or SystemClock()
    report: Report[DetailT] = Report(name)
    with job_run(settings, name.replace(" ", "-"), clk, ["train"]) as run:
        symbols = resolve_symbols(settings, clk, None)
        for series in series_for(settings, symbols, predictable=True):
            report.outcomes.append(one(series))
        return run.finish(report)


def _gated_job(
    settings: Settings,
    name: str,
    clock: Clock | None,
    one: Callable[[Series, CandleStore, Clock], SeriesOutcome[DetailT]],
) -> Report[DetailT]:
    """A job that reads candles for every forecast series (train, promote)."""
    clk = clock or SystemClock()
    store = connect.candle_store(settings)
    return _each_model_series(settings, name, clk, lambda s: one(s, store, clk))


def run_train_job(
    settings: Settings,
    *,
    promote: bool = False,
    gate: Gate | None = None,
    clock: Clock | None = None,
) -> Report[TrainDetail]:
    from coinpredict.forecast.registry import Gate
    from coinpredict.serving.training import train_one

    chosen = gate or Gate.for_cli()
    return _gated_job(
        settings,
        "train",
        clock,
        lambda s, store, clk: train_one(s, settings, store, clk, promote=promote, gate=chosen),
    )


def run_promote_job(
    settings: Settings, *, gate: Gate | None = None, clock: Clock | None = None
) -> Report[RegistryDetail]:
    """``models promote``: the shadow becomes champion where it passes the quality gate."""
    from coinpredict.forecast.registry import Gate
    from coinpredict.serving.training import promote_one

    chosen = gate or Gate.for_cli()
    return _gated_job(
        settings,
        "models promote",
        clock,
        lambda s, store, clk: promote_one(s, settings, store, clk, chosen),
    )


def run_rollback_job(settings: Settings, *, clock: Clock | None = None) -> Report[RegistryDetail]:
    """``models rollback``: the previous champion serves again."""
    from coinpredict.serving.training import rollback_one

    clk = clock or SystemClock()
    return _each_model_series(
        settings, "models rollback", clk, lambda s: rollback_one(s, settings, clk)
    )
