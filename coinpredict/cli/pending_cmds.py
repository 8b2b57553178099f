"""Commands whose core has not landed yet: they say so and exit 1 (never a fake success)."""

from __future__ import annotations

import typer

from coinpredict.cli.app import app
from coinpredict.cli.options import SymbolOpt, TimeframeOpt
from coinpredict.errors import CoinpredictError

models_app = typer.Typer(help="List, report, promote and roll back models (champion/shadow).")
app.add_typer(models_app, name="models")


def _todo(name: str) -> CoinpredictError:
    return CoinpredictError(f"coinpredict {name}: not implemented yet")


@app.command("predict")
def predict_cmd(symbol: SymbolOpt = None, timeframe: TimeframeOpt = None) -> None:
    """Forecast each configured non-1m series with its champion model and store the forecast."""
    raise _todo("predict")


@app.command("train")
def train_cmd(symbol: SymbolOpt = None, timeframe: TimeframeOpt = None) -> None:
    """Fit a new model version per series and register it as the shadow."""
    raise _todo("train")


@models_app.command("list")
def models_list() -> None:
    """List model versions per series."""
    raise _todo("models list")
