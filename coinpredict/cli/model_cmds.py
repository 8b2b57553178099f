"""Commands around models: predict, train, models list/report/promote/rollback/backtest."""

from __future__ import annotations

from typing import Annotated

import typer

from coinpredict.cli import render
from coinpredict.cli.context import state
from coinpredict.cli.data_cmds import render_report
from coinpredict.cli.options import JsonOpt, SymbolOpt, TimeframeOpt


def predict_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Forecast every series, also those without a new closed candle "
            "since their last successful run.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Forecast each configured non-1m series with its champion model and store the forecast.

    Series without a new closed candle since their last run are skipped (count printed). A
    failing series keeps its last good forecast and is marked degraded; exit 4 when some failed.
    """
    from coinpredict.jobs.runner import run_predict_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    raise typer.Exit(render_report(run_predict_job(settings, force=force), as_json))


def train_cmd(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote", help="Promote each new shadow through the quality gate right away."
        ),
    ] = False,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            help="Gate: the shadow's pinball loss must be at most the champion's x (1 - margin).",
        ),
    ] = 0.005,
    as_json: JsonOpt = False,
) -> None:
    """Fit a new model version per non-1m series from InfluxDB data and register it as the
    series' shadow (scored, never served). The champion keeps serving.
    """
    from coinpredict.forecast.registry import Gate
    from coinpredict.jobs.runner import run_train_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    report = run_train_job(settings, promote=promote, gate=Gate.for_cli(margin))
    raise typer.Exit(render_report(report, as_json))


models_app = typer.Typer(
    help="List, report, promote, roll back and backtest models (champion and shadow per series).",
    no_args_is_help=True,
)


def _one_series(
    ctx: typer.Context,
    symbol: list[str] | None,
    timeframe: list[str] | None,
) -> tuple:
    from coinpredict.base.clock import SystemClock
    from coinpredict.serving.training import model_series

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    return settings, model_series(settings, SystemClock())


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the model versions of every series with their role (champion, shadow, previous)."""
    from coinpredict.forecast.registry import list_versions
    from coinpredict.serving.predict import models_dir

    settings, series_list = _one_series(ctx, symbol, timeframe)
    out = [
        {
            "symbol": s.symbol,
            "timeframe": s.timeframe.code,
            "versions": list_versions(models_dir(settings), s.symbol, s.timeframe),
        }
        for s in series_list
    ]
    if as_json:
        render.print_json(out)
        return
    rows = [
        (
            o["symbol"],
            o["timeframe"],
            v["version"],
            v.get("name", ""),
            v.get("role", ""),
            v.get("created_at", ""),
            _fmt(v.get("metrics", {}).get("relative_mae")),
        )
        for o in out
        for v in o["versions"]
    ]
    render.table(
        "models", ["symbol", "tf", "version", "model", "role", "created", "rel. MAE"], rows
    )


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))


@models_app.command("report")
def models_report(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    origins: Annotated[int, typer.Option("--origins", min=10, help="Backtest origins.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Champion, shadow and naive side by side, on a fresh rolling backtest and on the live
    forecasts already realised in InfluxDB (relative MAE, MASE, coverage, width, pinball)."""
    from coinpredict.base.clock import SystemClock
    from coinpredict.serving.training import series_report

    settings, series_list = _one_series(ctx, symbol, timeframe)
    clock = SystemClock()
    out = [series_report(s, settings, clock, origins=origins) for s in series_list]
    if as_json:
        render.print_json(out)
        return
    from coinpredict.forecast.registry import METRIC_KEYS

    keys = list(METRIC_KEYS)
    rows = []
    for r in out:
        for source in ("backtest", "live"):
            for role in ("champion", "shadow", "naive"):
                m = r[source].get(role)
                if not m:
                    continue
                label = role if role == "naive" else f"{role} {(r[role] or {}).get('version', '')}"
                rows.append(
                    (r["symbol"], r["timeframe"], source, label, *(_fmt(m.get(k)) for k in keys))
                )
    render.table("models report", ["symbol", "tf", "source", "model", *keys], rows)


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    margin: Annotated[
        float, typer.Option("--margin", help="Gate margin over the champion.")
    ] = 0.005,
    as_json: JsonOpt = False,
) -> None:
    """Promote each series' shadow to champion if it passes the quality gate on a fresh rolling
    backtest: not worse than naive (relative MAE <= 1.00), better than the champion by the
    margin, coverage within tolerance, enough samples. Otherwise refuse (exit 1) and say why."""
    from coinpredict.forecast.registry import Gate
    from coinpredict.jobs.runner import run_promote_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    report = run_promote_job(settings, gate=Gate.for_cli(margin))
    raise typer.Exit(render_report(report, as_json))


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore the previous champion of each series (the replaced one stays as a version)."""
    from coinpredict.jobs.runner import run_rollback_job

    settings = state(ctx).settings(symbols=symbol, timeframes=timeframe)
    raise typer.Exit(render_report(run_rollback_job(settings), as_json))


@models_app.command("backtest")
def models_backtest(
    ctx: typer.Context,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    origins: Annotated[int, typer.Option("--origins", min=10, help="Rolling origins.")] = 200,
    span: Annotated[
        int | None,
        typer.Option(
            "--span",
            help="Spread the origins over the last N candles (default: all).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="YYYY-MM-DD: tune every choice on the candles before this date and report "
            "only origins from it on, every candle an origin, online calibration as served.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rolling-origin backtest of naive and the default learned model on stored candles (each
    refit with data up to its origin): relative MAE, MASE, coverage of the 80%/95% intervals,
    width, pinball, per horizon and overall. Saved to STATE_DIR/backtests. With --split: per
    horizon and per symbol coverage, width and interval score relative to naive's empirical
    band, with bootstrap confidence intervals."""
    from coinpredict.base.clock import SystemClock
    from coinpredict.base.timeframes import parse_instant
    from coinpredict.serving.training import run_backtest

    split_ms = None if split is None else parse_instant(split, setting="--split")
    settings, series_list = _one_series(ctx, symbol, timeframe)
    clock = SystemClock()
    out = [
        run_backtest(s, settings, clock, origins=origins, span=span, split_ms=split_ms)
        for s in series_list
    ]
    if as_json:
        render.print_json(out)
        return
    if split_ms is not None:
        _split_table(out)
        return
    from coinpredict.forecast.registry import METRIC_KEYS

    keys = [*METRIC_KEYS, "directional_accuracy"]
    rows = [
        (r["symbol"], r["timeframe"], name, *(_fmt(m["overall"].get(k)) for k in keys))
        for r in out
        for name, m in r["models"].items()
    ]
    render.table("backtest (overall)", ["symbol", "tf", "model", *keys], rows)


SPLIT_KEYS = (
    "samples",
    "coverage",
    "coverage_95",
    "relative_width",
    "relative_interval_score",
    "relative_pinball",
    "relative_mae",
)


def _split_table(out: list[dict]) -> None:
    rows = []
    for r in out:
        served = r["models"]["served"]
        scopes = [("overall", served["overall"])]
        scopes += [(f"h={m['h']}", m) for m in served["per_horizon"]]
        for scope, m in scopes:
            rows.append((r["symbol"], r["timeframe"], scope, *(_fmt(m.get(k)) for k in SPLIT_KEYS)))
        for name in ("naive",):
            m = r["models"][name]["overall"]
            rows.append((r["symbol"], r["timeframe"], name, *(_fmt(m.get(k)) for k in SPLIT_KEYS)))
    title = f"split backtest from {out[0]['split']} (served band, relative to naive)" if out else ""
    render.table(title, ["symbol", "tf", "scope", *SPLIT_KEYS], rows)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("predict")(predict_cmd)
    app.command("train")(train_cmd)
    app.add_typer(models_app, name="models")
