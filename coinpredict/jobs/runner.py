"""Job runners shared by the CLI and tests: locks + run record + the core work + metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from coinpredict.base.clock import Clock, SystemClock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ConfigError
from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.timeframes import iso
from coinpredict.exchange import connect as exchange_connect
from coinpredict.ingest.ingest import Progress, Window, run_ingest
from coinpredict.ingest.universe import resolve_symbols, series_for
from coinpredict.local.runs import recorded_run
from coinpredict.store import connect


def candle_locks(settings: Settings) -> list[str]:
    """Candle writers (backfill, ingest, detect-gaps --refill) lock per timeframe."""
    return [f"candles-{tf.code}" for tf in settings.timeframes]


def predict_locks(settings: Settings) -> list[str]:
    """predict locks per forecast timeframe (1m is never forecast)."""
    return [f"predict-{tf.code}" for tf in settings.timeframes if tf.code != "1m"]


@contextmanager
def job_run(
    settings: Settings, name: str, clock: Clock, locks: list[str]
) -> Iterator[Callable[..., Report]]:
    """Run under the job's locks with a run record; refresh the Prometheus textfile after.

    Yields ``finish(report, error=None)``, which copies the report's outcome into the run record
    (``error``: the run failed as a whole although it reports some series).
    """
    try:
        with recorded_run(
            settings.state_dir, name, clock, locks=locks, wait_ms=settings.lock_wait_ms
        ) as record:

            def finish(report: Report, error: str | None = None) -> Report:
                record.outcome = report.outcome if error is None else "failed"
                record.message = error
                record.series_ok = len(report.outcomes) - len(report.failed)
                record.series_failed = len(report.failed)
                skipped = sum(1 for o in report.outcomes if o.details.get("skipped"))
                if skipped:
                    record.extra["skipped"] = skipped
                return report

            yield finish
    finally:
        from coinpredict.health.metrics import write_textfile

        write_textfile(settings, clock, evaluate=False)


def run_candle_job(
    job: str,
    settings: Settings,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    clock: Clock | None = None,
    exchange: Any = None,
    progress: Progress | None = None,
    then: Callable[[SeriesOutcome], None] | None = None,
) -> Report:
    """backfill / ingest every configured series; ``then(outcome)`` as each series is done."""
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise ConfigError(f"--since {iso(since_ms)} is not before --until {iso(until_ms)}")
    clk = clock or SystemClock()
    adapter = exchange or exchange_connect.exchange(
        settings, clk
    )  # a bad exchange id stops us here
    try:
        with job_run(settings, job, clk, candle_locks(settings)) as finish:
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
            return finish(report)
    finally:
        if exchange is None:
            adapter.close()


def run_gaps_job(
    settings: Settings,
    *,
    refill: bool,
    recheck: bool = False,
    clock: Clock | None = None,
    exchange: Any = None,
) -> tuple[Report, list[Any]]:
    from coinpredict.ingest.gaps import run_detect

    clk = clock or SystemClock()
    adapter = exchange
    if refill and adapter is None:
        adapter = exchange_connect.exchange(settings, clk)
    try:
        locks = candle_locks(settings) if refill else []
        with job_run(settings, "detect-gaps", clk, locks) as finish:
            symbols = resolve_symbols(settings, clk, None)
            report, found = run_detect(
                series_for(settings, symbols),
                settings,
                connect.candle_store(settings),
                clk,
                exchange=adapter if refill else None,
                recheck=recheck,
            )
            finish(report)
    finally:
        if adapter is not None and exchange is None:
            adapter.close()
    return report, found


def run_predict_job(
    settings: Settings, *, force: bool = False, clock: Clock | None = None
) -> Report:
    from coinpredict.serving.predict import run_predict
    from coinpredict.store.predictions import PredictionStore

    clk = clock or SystemClock()
    with job_run(settings, "predict", clk, predict_locks(settings)) as finish:
        http = connect.influx(settings)
        symbols = resolve_symbols(settings, clk, None)
        return finish(
            run_predict(
                series_for(settings, symbols, predictable=True),
                settings,
                connect.candle_store(settings, http),
                PredictionStore(http, db=settings.influx_db),
                clk,
                force=force,
            )
        )


def run_train_job(
    settings: Settings, *, promote: bool = False, gate: Any = None, clock: Clock | None = None
) -> Report:
    from coinpredict.forecast.registry import Gate
    from coinpredict.serving.training import train_one

    clk = clock or SystemClock()
    report = Report("train")
    with job_run(settings, "train", clk, ["train"]) as finish:
        store = connect.candle_store(settings)
        for series in series_for(settings, resolve_symbols(settings, clk, None), predictable=True):
            report.outcomes.append(
                train_one(
                    series, settings, store, clk, promote=promote, gate=gate or Gate.for_cli()
                )
            )
        return finish(report)


def run_registry_job(
    action: str, settings: Settings, *, gate: Any = None, clock: Clock | None = None
) -> Report:
    """``models promote`` / ``models rollback`` for every selected series, under the train lock
    (the registry does not lock itself; training changes it too)."""
    from coinpredict.forecast.registry import Gate
    from coinpredict.serving.training import promote_one, rollback_one

    clk = clock or SystemClock()
    report = Report(f"models {action}")
    with job_run(settings, f"models-{action}", clk, ["train"]) as finish:
        store = connect.candle_store(settings) if action == "promote" else None
        for series in series_for(settings, resolve_symbols(settings, clk, None), predictable=True):
            if store is not None:
                report.outcomes.append(
                    promote_one(series, settings, store, clk, gate or Gate.for_cli())
                )
            else:
                report.outcomes.append(rollback_one(series, settings, clk))
        return finish(report)
