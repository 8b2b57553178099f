"""Job runners shared by the CLI and tests: locks + run record + the core work."""

from __future__ import annotations

from typing import Any

from coinpredict import wiring
from coinpredict.clock import Clock
from coinpredict.config import Settings
from coinpredict.errors import ConfigError
from coinpredict.ingest import Progress, Window, run_ingest
from coinpredict.outcomes import Report
from coinpredict.runs import recorded_run
from coinpredict.timeframes import iso
from coinpredict.universe import resolve_symbols, series_for


def candle_locks(settings: Settings) -> list[str]:
    """Candle writers (backfill, ingest, detect-gaps --refill) lock per timeframe."""
    return [f"candles-{tf.code}" for tf in settings.timeframes]


def run_candle_job(
    job: str,
    settings: Settings,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    clock: Clock | None = None,
    exchange: Any = None,
    progress: Progress | None = None,
) -> Report:
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise ConfigError(f"--since {iso(since_ms)} is not before --until {iso(until_ms)}")
    clk = clock or wiring.clock()
    with recorded_run(
        settings.state_dir, job, clk, locks=candle_locks(settings), wait_ms=settings.lock_wait_ms
    ) as record:
        adapter = exchange or wiring.exchange(settings, clk)
        try:
            symbols = resolve_symbols(settings, clk, adapter.quote_volumes)
            window = Window(since_ms, None if until_ms is None else until_ms - 1)
            report = run_ingest(
                job,
                series_for(settings, symbols),
                settings,
                adapter,
                wiring.candle_store(settings),
                clk,
                window,
                progress,
            )
        finally:
            if exchange is None:
                adapter.close()
        record.outcome = report.outcome
        record.series_ok = len(report.outcomes) - len(report.failed)
        record.series_failed = len(report.failed)
    return report


def run_gaps_job(
    settings: Settings,
    *,
    refill: bool,
    recheck: bool = False,
    clock: Clock | None = None,
    exchange: Any = None,
) -> tuple[Report, list[Any]]:
    from coinpredict.gaps import run_detect

    clk = clock or wiring.clock()
    locks = candle_locks(settings) if refill else []
    with recorded_run(
        settings.state_dir, "detect-gaps", clk, locks=locks, wait_ms=settings.lock_wait_ms
    ) as record:
        adapter = exchange
        if refill and adapter is None:
            adapter = wiring.exchange(settings, clk)
        try:
            symbols = resolve_symbols(settings, clk, None)
            report, found = run_detect(
                series_for(settings, symbols),
                settings,
                wiring.candle_store(settings),
                clk,
                exchange=adapter if refill else None,
                recheck=recheck,
            )
        finally:
            if adapter is not None and exchange is None:
                adapter.close()
        record.outcome = report.outcome
        record.series_ok = len(report.outcomes) - len(report.failed)
        record.series_failed = len(report.failed)
    return report, found


def run_predict_job(
    settings: Settings, *, force: bool = False, clock: Clock | None = None
) -> Report:
    from coinpredict.predict import run_predict
    from coinpredict.store.predictions import PredictionStore

    clk = clock or wiring.clock()
    locks = [f"predict-{tf.code}" for tf in settings.timeframes if tf.code != "1m"]
    with recorded_run(
        settings.state_dir, "predict", clk, locks=locks, wait_ms=settings.lock_wait_ms
    ) as record:
        http = wiring.influx(settings)
        symbols = resolve_symbols(settings, clk, None)
        report = run_predict(
            series_for(settings, symbols, predictable=True),
            settings,
            wiring.candle_store(settings, http),
            PredictionStore(http, db=settings.influx_db),
            clk,
            force=force,
        )
        record.outcome = report.outcome
        record.series_ok = len(report.outcomes) - len(report.failed)
        record.series_failed = len(report.failed)
        record.extra["skipped"] = sum(1 for o in report.outcomes if o.details.get("skipped"))
    return report
