"""Options shared by the per-series commands."""

from __future__ import annotations

from typing import Annotated

import typer

SymbolOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--symbol",
        "-s",
        help="Symbol to work on (ccxt form, BTC/USDT); repeatable. Default: COINPREDICT_SYMBOLS.",
        show_default=False,
    ),
]
TimeframeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--timeframe",
        "-t",
        help="Timeframe (1m, 1h, 1d, 1w, 1M); repeatable. Default: COINPREDICT_TIMEFRAMES.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
