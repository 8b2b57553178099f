"""``coinpredict cycle``: ingest, predict and export in one process (the systemd timers run it)."""

from __future__ import annotations

import typer

from coinpredict.cli import render
from coinpredict.cli.context import state
from coinpredict.cli.options import JsonOpt, SymbolOpt, TimeframeOpt


def cycle_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One candle cycle: ingest, then predict each series as soon as its candles are in, then
    export every configured series (all timeframes).

    The three stages keep their own locks and run records. A failed stage does not stop the
    next: export always runs, so the published freshness is the real one.

    Exit 0 every stage ok; 4 some series failed in some stage; 1 a stage failed as a whole or
    every series of a stage failed (the other stages still ran); 2 bad usage or configuration,
    before any stage ran.
    """
    from coinpredict.jobs.cycle import STAGES, run_cycle

    cli = state(ctx)
    narrowed = cli.settings(symbols=symbol, timeframes=timeframe)
    result = run_cycle(cli.settings(), stages=narrowed)
    if as_json:
        render.print_json(result.as_dict())
        raise typer.Exit(result.exit_code)
    rows = []
    for stage in STAGES:
        done = getattr(result, stage)
        error = result.errors.get(stage)
        ok = failed = skipped = ""
        detail = error.message if error is not None else ""
        if stage == "export" and done is not None:
            failed = str(len(done.failed))
            ok = str(len(done.evaluation.series) - len(done.failed))
            detail = detail or (
                f"wrote {len(done.written) + 2} files, {len(done.unchanged)} unchanged"
            )
        elif done is not None:
            failed = str(len(done.failed))
            ok = str(len(done.outcomes) - len(done.failed))
            if stage == "predict" and result.predict is not None:
                skipped = str(sum(1 for o in result.predict.outcomes if o.detail.skipped))
            elif stage == "ingest" and result.ingest is not None and not detail:
                stored = sum(o.detail.stored for o in result.ingest.outcomes)
                pages = sum(o.detail.pages for o in result.ingest.outcomes)
                detail = f"{stored} candles stored from {pages} pages"
        if done is None and error is None:  # predict with only 1m selected
            detail = "nothing to forecast (1m is never forecast)"
        outcome = "failed" if error is not None else done.outcome if done is not None else "-"
        rows.append(
            (stage, outcome, ok, failed, skipped, f"{result.done_s.get(stage, 0):.2f} s", detail)
        )
    render.table(
        f"cycle: {result.outcome}",
        ["stage", "outcome", "series ok", "failed", "skipped", "done after", "detail"],
        rows,
    )
    for stage in ("ingest", "predict"):
        report = getattr(result, stage)
        for o in report.failed if report is not None else ():
            render.line(f"{stage} {o.series.label}: {o.error}")
    if result.export is not None and result.export.failed:
        render.line(f"export incomplete: {result.export.reason()}")
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("cycle")(cycle_cmd)
