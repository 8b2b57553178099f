"""Commands that publish and watch: export, status, monitor, check (stubs until they land)."""

from __future__ import annotations

from coinpredict.cli.app import app
from coinpredict.cli.options import JsonOpt
from coinpredict.errors import CoinpredictError


def _todo(name: str) -> CoinpredictError:
    return CoinpredictError(f"coinpredict {name}: not implemented yet")


@app.command("export")
def export_cmd() -> None:
    """Write the JSON artifacts (predictions, history, manifest, status) atomically."""
    raise _todo("export")


@app.command("status")
def status_cmd(as_json: JsonOpt = False) -> None:
    """Freshness of every series as a table, or JSON on stdout."""
    raise _todo("status")


@app.command("monitor")
def monitor_cmd() -> None:
    """Evaluate like status and emit one alert per state transition."""
    raise _todo("monitor")
