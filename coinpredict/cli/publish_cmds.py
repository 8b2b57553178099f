"""Commands that publish and watch: export, status, monitor, check.

Module level stays light (``status`` must answer fast): the cores are imported in the bodies.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coinpredict.cli import render
from coinpredict.cli.context import state
from coinpredict.cli.options import JsonOpt, SymbolOpt, TimeframeOpt


def _age(v) -> str:  # noqa: ANN001 (a Verdict; imported lazily)
    from coinpredict.health.freshness import fmt_duration

    return fmt_duration(v.age_ms) if v is not None and v.age_ms is not None else "-"


def _when(ms: int | None) -> str:
    from coinpredict.base.timeframes import iso

    return iso(ms) if ms is not None else "-"


def export_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Rewrite every file, also those of series with nothing new since the last export.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the JSON artifacts (predictions, history, manifest, status) atomically.

    Files of series with nothing new since the last export (same newest candle, forecast,
    freshness and degraded flag) are left as they are; manifest.json and status.json are
    always rewritten.

    Exit 0 done (stale or hard_stale series are exported with a warning or blocked, not a
    failure), 4 some series could not be read, 1 InfluxDB unreachable or directory unwritable.
    Series that could not be read are published as unknown; manifest.json and status.json are
    written on every run.
    """
    from coinpredict.base.clock import SystemClock
    from coinpredict.jobs.runner import run_export_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    result = run_export_job(
        settings, SystemClock(), narrowed=bool(symbol or timeframe), force=force
    )
    if as_json:
        render.print_json(result.as_dict())
        _export_exit(result)
    rows = []
    for h in result.evaluation.series:
        served = h.served
        rows.append(
            (
                h.series.symbol,
                h.series.timeframe.code,
                h.data.freshness,
                served.freshness if served else "-",
                "yes" if h.degraded else "",
                "blocked" if h.blocked else ("served" if served else "history only"),
            )
        )
    render.table(
        f"export: {result.outcome}",
        ["symbol", "tf", "data", "prediction", "degraded", "predictions"],
        rows,
    )
    render.line(
        f"wrote {len(result.written) + 2} files to {result.directory}; "
        f"{len(result.unchanged)} unchanged (nothing new since the last export)"
    )
    if result.failed:
        render.line(
            f"not read (unknown, blocked; previous history kept): {', '.join(result.failed)}"
        )
    _export_exit(result)


def _export_exit(result) -> None:  # noqa: ANN001 (an ExportResult; imported lazily)
    """Exit with the export's code; an incomplete export says why in one line on stderr."""
    from coinpredict.base.errors import CoinpredictError

    reason = result.reason()
    if reason is not None:
        raise CoinpredictError(f"export incomplete: {reason}", exit_code=int(result.exit_code))
    raise typer.Exit(int(result.exit_code))


def status_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Freshness of every series as a table, or JSON on stdout.

    Exit 0 all fresh and none degraded, 1 some stale or degraded, 2 some hard_stale or corrupt,
    3 unknown (InfluxDB unreachable; what is known is still printed).
    """
    from coinpredict.base.clock import SystemClock
    from coinpredict.health.metrics import write_textfile
    from coinpredict.health.status import run_status

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    clock = SystemClock()
    ev, doc = run_status(settings, clock)
    write_textfile(settings, clock, ev)
    if as_json:
        render.print_json(doc)
        raise typer.Exit(int(ev.exit_code))
    rows = []
    for h in ev.series:
        served = h.served
        rows.append(
            (
                h.series.label,
                _when(h.data.at_ms),
                _age(h.data),
                h.data.freshness,
                served.freshness if served else "-",
                "DEGRADED" if h.degraded else "",
                (h.ingest or {}).get("status", "-"),
                (h.predict or {}).get("status", "-") if served else "-",
            )
        )
    render.table(
        f"coinpredict status at {doc['generated_at']}: {doc['health']}",
        ["series", "last candle", "age", "data", "prediction", "degraded", "ingest", "predict"],
        rows,
    )
    jobs = [
        (
            job,
            s["last_outcome"],
            s["last_end"],
            s["last_success"],
            s["duration_p50_s"],
            s["duration_p95_s"],
            f"{s['overrun_rate']:.0%}",
            f"{s['failure_rate']:.0%}",
        )
        for job, s in doc["jobs"].items()
    ]
    if jobs:
        render.table(
            "jobs (last 100 runs)",
            ["job", "last", "ended", "last success", "p50 s", "p95 s", "overrun", "failed"],
            jobs,
        )
    if ev.store_error:
        render.line(f"InfluxDB: {ev.store_error}")
    for problem in ev.problems:
        render.line(f"corrupt: {problem}")
    for h in ev.series:
        for kind, v in (("data", h.data), ("prediction", h.served)):
            if v is not None and v.reason and not ev.store_error:
                render.line(f"{h.series.label} {kind} {v.freshness}: {v.reason}")
        if h.degraded:
            render.line(f"{h.series.label} degraded: {h.degraded_reason}")
    raise typer.Exit(int(ev.exit_code))


def monitor_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate like status and emit one alert per state transition (log + webhook).

    Exit codes as status. Undelivered webhook alerts are kept and retried on the next run.
    """
    from coinpredict.base.clock import SystemClock
    from coinpredict.base.timeframes import iso
    from coinpredict.jobs.runner import run_monitor_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    result = run_monitor_job(settings, SystemClock())
    ev = result.evaluation
    if as_json:
        render.print_json(
            {
                "generated_at": iso(ev.now_ms),
                "exit_code": int(result.exit_code),
                "first_run": result.first_run,
                "alerts": [a.payload() for a in result.alerts],
                "delivered": result.delivered,
                "pending": result.pending,
                "webhook_error": result.webhook_error,
            }
        )
        raise typer.Exit(int(result.exit_code))
    # every alert was logged (stderr, one line each); stdout carries the summary
    summary = f"monitor: {len(ev.series)} series, {len(result.alerts)} alert(s)" + (
        " (baseline)" if result.first_run else ""
    )
    if settings.alert_webhook:
        summary += f", {result.delivered} delivered, {result.pending} pending"
    render.line(summary)
    if result.webhook_error:
        render.line(f"webhook: {result.webhook_error}")
    raise typer.Exit(int(result.exit_code))


def check_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the exported JSON against InfluxDB and for sane future values.

    Exit 1 on any mismatch (each named by file and field), 0 otherwise.
    """
    from coinpredict.base.clock import SystemClock
    from coinpredict.publish.check import run_check

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    result = run_check(settings, SystemClock())
    if as_json:
        render.print_json(result.as_dict())
    else:
        for problem in result.problems:
            render.line(f"MISMATCH {problem}")
        render.line(
            f"check: {len(result.checked)} files, {len(result.problems)} problem(s) "
            f"in {settings.export_dir}"
        )
    raise typer.Exit(int(result.exit_code))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("export")(export_cmd)
    app.command("status")(status_cmd)
    app.command("monitor")(monitor_cmd)
    app.command("check")(check_cmd)
