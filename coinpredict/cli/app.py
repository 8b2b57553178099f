"""The command line: parse arguments, call one core function, render its typed result.

Every command's logic lives in a core module; heavy libraries (ccxt, scikit-learn, joblib) are
imported inside the command bodies, never here, so ``--help``, ``status`` and ``config`` stay light.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from coinpredict.base.errors import CoinpredictError, ExitCode
from coinpredict.base.redact import install_log_redaction, redact
from coinpredict.cli import cycle_cmd, data_cmds, model_cmds, publish_cmds, render
from coinpredict.cli.context import CliState, state
from coinpredict.cli.options import JsonOpt
from coinpredict.cli.replay import replay_app

app = typer.Typer(
    name="coinpredict",
    help="Keep crypto candle data honest in InfluxDB and publish calibrated forecasts as JSON.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML config file (else $COINPREDICT_CONFIG, "
            "./coinpredict.toml, /etc/coinpredict/coinpredict.toml).",
            show_default=False,
        ),
    ] = None,
    influx_url: Annotated[
        str | None,
        typer.Option("--influx-url", help="Overrides COINPREDICT_INFLUX_URL.", show_default=False),
    ] = None,
    exchange_url: Annotated[
        str | None,
        typer.Option(
            "--exchange-url", help="Overrides COINPREDICT_EXCHANGE_URL.", show_default=False
        ),
    ] = None,
    state_dir: Annotated[
        str | None,
        typer.Option("--state-dir", help="Overrides COINPREDICT_STATE_DIR.", show_default=False),
    ] = None,
    export_dir: Annotated[
        str | None,
        typer.Option("--export-dir", help="Overrides COINPREDICT_EXPORT_DIR.", show_default=False),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Keep crypto candle data honest in InfluxDB and publish calibrated forecasts as JSON.

    Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 4 partial failure;
    status/monitor: 0 fresh, 1 stale/degraded, 2 hard_stale/corrupt, 3 unknown.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()
    flags = {
        "influx_url": influx_url,
        "exchange_url": exchange_url,
        "state_dir": state_dir,
        "export_dir": export_dir,
    }
    ctx.obj = CliState(config_file=config, flags={k: v for k, v in flags.items() if v})


@app.command("config")
def config_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print the effective settings (secrets masked) and where each came from; validate them."""
    settings = state(ctx).settings()
    values = settings.public_dict()
    if as_json:
        render.print_json(
            {
                "settings": values,
                "sources": dict(settings.sources),
                "config_file": str(settings.config_file) if settings.config_file else None,
            }
        )
        return
    rows = [
        (k, v, settings.sources.get(k, "default")) for k, v in values.items() if k != "policies"
    ]
    render.table("coinpredict settings", ["setting", "value", "from"], rows)
    prow = [
        (
            code,
            p["grace_ms"] // 1000,
            p["data_hard_ms"] // 1000,
            None if p["prediction_hard_ms"] is None else p["prediction_hard_ms"] // 1000,
            p["horizon"],
        )
        for code, p in values["policies"].items()
    ]
    render.table(
        "per-timeframe policy (seconds)",
        ["timeframe", "grace", "data hard limit", "prediction hard limit", "horizon"],
        prow,
    )


# Every command, registered explicitly (no import side effects).
for _module in (data_cmds, model_cmds, cycle_cmd, publish_cmds):
    _module.register(app)
app.add_typer(replay_app, name="replay")


def _error_line(message: str) -> None:
    """The one way an error reaches stderr: one line, credentials masked."""
    text = " ".join(redact(message).split())
    render.err_console.print(f"error: {text}", highlight=False, soft_wrap=True, markup=False)


def main() -> None:
    """Console entry point: the only place errors are printed.

    Typer handles usage errors (exit 2) and --help itself; commands end with ``typer.Exit(code)``.
    """
    try:
        app()
    except CoinpredictError as exc:
        _error_line(exc.message)
        sys.exit(int(exc.exit_code))
    except OSError as exc:
        # an environmental failure no adapter turned into a CoinpredictError: one line, exit 1
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        _error_line(f"{exc.strerror or exc}{where}")
        sys.exit(int(ExitCode.FAILURE))
    except KeyboardInterrupt:
        sys.exit(130)
