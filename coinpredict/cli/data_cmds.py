"""Commands that bring candles in: init, backfill, ingest, detect-gaps."""

from __future__ import annotations

from typing import Annotated

import typer

from coinpredict.cli import render
from coinpredict.cli.app import app
from coinpredict.cli.context import state
from coinpredict.cli.options import JsonOpt, SymbolOpt, TimeframeOpt
from coinpredict.cli.progress import series_progress
from coinpredict.outcomes import Report


def render_report(report: Report, as_json: bool = False) -> None:
    if as_json:
        render.print_json(report.as_dict())
        return int(report.exit_code)
    rows = []
    for o in report.outcomes:
        d = o.details
        rows.append(
            (
                o.series.symbol,
                o.series.timeframe.code,
                "ok" if o.ok else "FAILED",
                d.get("stored", ""),
                d.get("pages", ""),
                d.get("rejected", ""),
                o.error or d.get("note", ""),
            )
        )
    render.table(
        f"{report.job}: {report.outcome}",
        ["symbol", "tf", "outcome", "stored", "pages", "rejected", "detail"],
        rows,
    )
    for note in report.notes:
        render.line(note)
    return int(report.exit_code)


@app.command("init")
def init_cmd(ctx: typer.Context) -> None:
    """Create (1.x) or check (2.x/3.x) the databases and the 1m retention; create dirs.

    Idempotent: a second run changes nothing.
    """
    from coinpredict import wiring
    from coinpredict.store.setup import init_storage

    settings = state(ctx).settings()
    result = init_storage(settings, wiring.influx(settings))
    render.line(f"InfluxDB {result.server_version} at {settings.influx_url}")
    for action in result.actions or ["nothing to change"]:
        render.line(f"  {action}")
    for todo in result.todo:
        render.line(f"  TODO: {todo}")
    raise typer.Exit(0 if result.ok else 1)


@app.command("backfill")
def backfill_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Start (YYYY-MM-DD or ISO 8601, UTC). Default: the rolling window for "
            "1m, the exchange's first candle otherwise. Resumes from the ingest cursor.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="End, exclusive (YYYY-MM-DD or ISO 8601, UTC). Default: the last closed candle.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Page history from the exchange into InfluxDB, resuming from the ingest cursor."""
    from coinpredict.jobs import run_candle_job
    from coinpredict.timeframes import parse_instant

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    since_ms = parse_instant(since, setting="--since") if since else None
    until_ms = parse_instant(until, setting="--until") if until else None
    with series_progress("backfill") as bar:
        report = run_candle_job(
            "backfill", settings, since_ms=since_ms, until_ms=until_ms, progress=bar
        )
    raise typer.Exit(render_report(report, as_json))


@app.command("ingest")
def ingest_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch the closed candles after each series' cursor (backfilling new series first).

    Exit 0 all series ok, 4 some failed, 1 all failed (stored data and cursors unchanged).
    """
    from coinpredict.jobs import run_candle_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    with series_progress("ingest") as bar:
        report = run_candle_job("ingest", settings, progress=bar)
    raise typer.Exit(render_report(report, as_json))
