"""Forecasting: models with calibrated intervals, the rolling backtest and the model registry.

Importing this package is cheap (nothing heavy); the names below load their module on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Forecast": "types",
    "InsufficientHistoryError": "types",
    "InvalidFrameError": "types",
    "PromotionRefused": "types",
    "DEFAULT_HORIZONS": "types",
    "DEFAULT_LEVEL": "types",
    "Forecaster": "models",
    "NaiveForecaster": "models",
    "RidgeForecaster": "models",
    "make_model": "models",
    "DEFAULT_MODEL": "models",
    "candles_needed": "models",
    "save_model": "artifact",
    "load_model": "artifact",
    "backtest": "backtest",
    "BacktestResult": "backtest",
    "format_table": "backtest",
    "Gate": "registry",
    "Registry": "registry",
    "champion": "registry",
    "shadow": "registry",
    "register_shadow": "registry",
    "promote": "registry",
    "rollback": "registry",
    "prune": "registry",
    "train_series": "registry",
    "forecast_for_series": "registry",
    "list_versions": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
