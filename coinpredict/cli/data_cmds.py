"""Commands that bring candles in: init, backfill, ingest, detect-gaps."""

from __future__ import annotations

from typing import Annotated

import typer

from coinpredict.base.outcomes import DetailT, Report
from coinpredict.cli import render
from coinpredict.cli.context import state
from coinpredict.cli.options import JsonOpt, SymbolOpt, TimeframeOpt
from coinpredict.cli.progress import series_progress


def render_report(report: Report[DetailT], as_json: bool = False) -> int:
    """A per-series summary table (or JSON); returns the report's exit code."""
    if as_json:
        render.print_json(report.as_dict())
        return int(report.exit_code)
    columns = [o.detail.columns() for o in report.outcomes]
    keys: list[str] = []
    for cols in columns:
        keys += [k for k in cols if k not in keys]
    rows = [
        (
            o.series.symbol,
            o.series.timeframe.code,
            "ok" if o.ok else "FAILED",
            *(cols.get(k, "") for k in keys),
            o.error or o.detail.remarks(),
        )
        for o, cols in zip(report.outcomes, columns, strict=True)
    ]
    render.table(
        f"{report.job}: {report.outcome}", ["symbol", "tf", "outcome", *keys, "detail"], rows
    )
    for note in report.notes:
        render.line(note)
    return int(report.exit_code)


def init_cmd(ctx: typer.Context) -> None:
    """Create (1.x) or check (2.x/3.x) the databases and the 1m retention; create dirs.

    Idempotent: a second run changes nothing.
    """
    from coinpredict.store import connect
    from coinpredict.store.setup import init_storage

    settings = state(ctx).settings()
    result = init_storage(settings, connect.influx(settings))
    render.line(f"InfluxDB {result.server_version} at {settings.influx_url}")
    for action in result.actions or ["nothing to change"]:
        render.line(f"  {action}")
    for todo in result.todo:
        render.line(f"  TODO: {todo}")
    raise typer.Exit(0 if result.ok else 1)


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
    from coinpredict.base.timeframes import parse_instant
    from coinpredict.jobs.runner import run_candle_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    since_ms = parse_instant(since, setting="--since") if since else None
    until_ms = parse_instant(until, setting="--until") if until else None
    with series_progress("backfill") as bar:
        report = run_candle_job(
            "backfill", settings, since_ms=since_ms, until_ms=until_ms, progress=bar
        )
    raise typer.Exit(render_report(report, as_json))


def ingest_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch the closed candles after each series' cursor (backfilling new series first).

    Exit 0 all series ok, 4 some failed, 1 all failed (stored data and cursors unchanged).
    """
    from coinpredict.jobs.runner import run_candle_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    with series_progress("ingest") as bar:
        report = run_candle_job("ingest", settings, progress=bar)
    raise typer.Exit(render_report(report, as_json))


def detect_gaps_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    refill: Annotated[
        bool,
        typer.Option(
            "--refill",
            help="Refetch missing ranges from the exchange; ranges it has no candles "
            "for are recorded as exchange gaps.",
        ),
    ] = False,
    recheck: Annotated[
        bool,
        typer.Option(
            "--recheck",
            help="Treat recorded exchange gaps as missing again (refetch them with --refill).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find missing candles on the timeframe grid, from the series start to the last closed
    candle; report them, and refetch them with --refill.

    Exchange gaps (ranges the exchange confirmed it has no data for) are reported separately
    and not refetched unless --recheck is given.
    """
    from coinpredict.ingest.gaps import gaps_json
    from coinpredict.jobs.runner import run_gaps_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    report, found = run_gaps_job(settings, refill=refill, recheck=recheck)
    data = gaps_json(report, found)
    if as_json:
        render.print_json(data)
        raise typer.Exit(int(report.exit_code))
    rows = []
    for s in data["series"]:
        if s["error"]:
            rows.append((s["symbol"], s["timeframe"], "FAILED", "", "", s["error"]))
            continue
        for r in s["missing"]:
            rows.append((s["symbol"], s["timeframe"], "missing", r["first"], r["last"], r["count"]))
        for r in s["exchange_gaps"]:
            rows.append(
                (s["symbol"], s["timeframe"], "exchange gap", r["first"], r["last"], r["count"])
            )
        if not s["missing"] and not s["exchange_gaps"]:
            rows.append((s["symbol"], s["timeframe"], "complete", s["start"], s["end"], 0))
    render.table("detect-gaps", ["symbol", "tf", "kind", "first", "last", "candles"], rows)
    for s in data["series"]:
        if s["refilled"]:
            render.line(f"{s['symbol']} {s['timeframe']}: refilled {s['refilled']} candles")
    raise typer.Exit(int(report.exit_code))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("init")(init_cmd)
    app.command("backfill")(backfill_cmd)
    app.command("ingest")(ingest_cmd)
    app.command("detect-gaps")(detect_gaps_cmd)
