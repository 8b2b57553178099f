"""The one place that builds InfluxDB clients and stores from Settings.

The candle store pulls in numpy and polars, so it is imported only when asked for: ``status``
and ``monitor`` build a bare :class:`InfluxHTTP` and stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coinpredict.base.config import Settings
from coinpredict.store.http import InfluxHTTP

if TYPE_CHECKING:
    from coinpredict.store.candles import CandleStore
    from coinpredict.store.predictions import PredictionStore


def influx(settings: Settings, timeout_s: float = 30.0) -> InfluxHTTP:
    return InfluxHTTP(
        settings.influx_url,
        token=settings.influx_token,
        username=settings.influx_username,
        password=settings.influx_password,
        timeout_s=timeout_s,
    )


def candle_store(settings: Settings, http: InfluxHTTP | None = None) -> CandleStore:
    from coinpredict.store.candles import CandleStore

    return CandleStore(http or influx(settings), db=settings.influx_db, db_1m=settings.influx_db_1m)


def prediction_store(settings: Settings, http: InfluxHTTP | None = None) -> PredictionStore:
    from coinpredict.store.predictions import PredictionStore

    return PredictionStore(http or influx(settings), db=settings.influx_db)
