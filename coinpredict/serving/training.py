"""``train`` and ``models ...``: fit shadows from InfluxDB data, promote through the gate.

Training takes its own lock and never touches the champion; the registry is updated atomically
last (coinpredict.forecast.registry), so a crash mid-training leaves serving untouched.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ArtifactError, CoinpredictError, StoreError
from coinpredict.base.outcomes import SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.ingest.universe import resolve_symbols, series_for
from coinpredict.serving.outcomes import (
    RegistryDetail,
    RegistryOutcome,
    TrainDetail,
    TrainedModel,
    TrainOutcome,
)
from coinpredict.serving.predict import models_dir, read_closed
from coinpredict.store import connect
from coinpredict.store.candles import CandleStore

if TYPE_CHECKING:
    from coinpredict.forecast.registry import Gate

log = logging.getLogger("coinpredict.serving.training")


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else value


def train_one(
    series: Series,
    settings: Settings,
    store: CandleStore,
    clock: Clock,
    *,
    promote: bool,
    gate: Gate,
) -> TrainOutcome:
    from coinpredict.forecast.registry import PromotionRefused, Registry, train_series
    from coinpredict.forecast.types import InsufficientHistoryError

    outcome = SeriesOutcome(series, TrainDetail())
    tf = series.timeframe
    try:
        horizon = settings.policy(tf).horizon
        frame = read_closed(store, series, clock.now_ms(), horizon, "train")
        result = train_series(
            models_dir(settings),
            series.symbol,
            tf,
            frame,
            horizon,
            level=settings.interval_level,
            clock=clock,
        )
        pruned = Registry(models_dir(settings), series.symbol, tf).prune(
            settings.model_keep, by="train", clock=clock
        )
        if pruned:
            outcome.detail.pruned = ",".join(pruned)
        m = result.metrics
        outcome.detail.trained = TrainedModel(
            version=result.version,
            relative_mae=_round(m.get("relative_mae")),
            coverage=_round(m.get("coverage")),
            samples=m.get("samples"),
        )
        if promote:
            try:
                Registry(models_dir(settings), series.symbol, tf).promote(
                    gate=gate,
                    frame=frame,
                    horizon=horizon,
                    level=settings.interval_level,
                    clock=clock,
                    by="train --promote",
                )
                outcome.detail.promoted = "yes"
            except PromotionRefused as exc:
                outcome.detail.promoted = f"refused: {exc.message}"
    except InsufficientHistoryError as exc:  # too short for the learned model: naive serves
        outcome.detail.skipped = exc.message
        log.info("%s: not trained: %s", series, exc.message)
    except (CoinpredictError, StoreError, ArtifactError) as exc:
        outcome.fail(exc.message)
        log.error("%s: training failed: %s", series, exc.message)
    return outcome


def model_series(settings: Settings, clock: Clock) -> list[Series]:
    return series_for(settings, resolve_symbols(settings, clock, None), predictable=True)


def series_report(
    series: Series, settings: Settings, clock: Clock, *, origins: int = 100
) -> dict[str, Any]:
    """Champion, shadow and naive side by side: fresh backtest + live realised forecasts."""
    from coinpredict.forecast.backtest import backtest
    from coinpredict.forecast.registry import Registry, compare_refs
    from coinpredict.serving.scoring import live_scores

    http = connect.influx(settings)
    store = connect.candle_store(settings, http)
    reg = Registry(models_dir(settings), series.symbol, series.timeframe)
    champ, shadow = reg.champion(), reg.shadow()
    horizon = settings.policy(series.timeframe).horizon
    frame = read_closed(store, series, clock.now_ms(), horizon, "train")
    level = settings.interval_level
    if shadow is not None:
        bt = compare_refs(
            champ, shadow, frame, series.timeframe, horizon, level=level, origins=origins
        )
        fresh = {
            "champion": bt["champion"],
            "shadow": bt["shadow"],
            "naive": bt["naive"],
            "n_origins": bt["n_origins"],
        }
    else:
        specs = (
            []
            if champ.is_builtin
            else [(f"champion:{champ.version}", champ.load(series.timeframe, horizon, level))]
        )
        res = backtest(frame, series.timeframe, specs, horizon, origins=origins, level=level)
        fresh = {
            "champion": res.models[specs[0][0] if specs else "naive"].overall,
            "shadow": None,
            "naive": res.models["naive"].overall,
            "n_origins": res.n_origins,
        }
    live = {
        "champion": live_scores(http, settings.influx_db, store, series, "champion"),
        "shadow": live_scores(http, settings.influx_db, store, series, "shadow"),
    }
    return {
        "symbol": series.symbol,
        "timeframe": series.timeframe.code,
        "champion": {"version": champ.version, "name": champ.name},
        "shadow": None if shadow is None else {"version": shadow.version, "name": shadow.name},
        "level": level,
        "horizon": horizon,
        "backtest": fresh,
        "live": live,
    }


def run_backtest(
    series: Series,
    settings: Settings,
    clock: Clock,
    *,
    origins: int = 200,
    span: int | None = None,
    models: tuple[str, ...] = (),
    split_ms: int | None = None,
) -> dict[str, Any]:
    """Rolling-origin backtest of naive and the learned model(s) on stored candles; the result
    is saved to STATE_DIR/backtests for the model reports. With ``split_ms``: the split
    evaluation (coinpredict.forecast.evaluation) instead, tuned before the split, reported
    after it, over every stored candle from two fit windows before the split."""
    from coinpredict.forecast.backtest import backtest
    from coinpredict.forecast.models import DEFAULT_MODEL
    from coinpredict.local import atomic

    store = connect.candle_store(settings)
    tf = series.timeframe
    horizon = settings.policy(tf).horizon
    if split_ms is None:
        frame = read_closed(store, series, clock.now_ms(), horizon, "train")
        res: Any = backtest(
            frame,
            tf,
            list(models or (DEFAULT_MODEL,)),
            horizon,
            origins=origins,
            span=span,
            level=settings.interval_level,
        )
        name = f"{series.stem}.json"
    else:
        res = _split_backtest(series, settings, store, clock, split_ms, models)
        name = f"{series.stem}-split.json"
    out = {"symbol": series.symbol, "timeframe": tf.code, **res.to_json()}
    path = settings.state_dir / "backtests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, out)
    return out


def _split_backtest(
    series: Series,
    settings: Settings,
    store: CandleStore,
    clock: Clock,
    split_ms: int,
    models: tuple[str, ...],
) -> Any:
    from coinpredict.forecast import candles_needed
    from coinpredict.forecast.evaluation import split_backtest
    from coinpredict.forecast.models import DEFAULT_MODEL
    from coinpredict.serving.predict import newest_closed

    tf = series.timeframe
    horizon = settings.policy(tf).horizon
    newest = newest_closed(store, series, clock.now_ms())
    if newest is None or newest <= split_ms:
        raise CoinpredictError(f"{series}: no stored closed candle after the split")
    start = tf.add(tf.floor(split_ms), -candles_needed(tf, horizon, "train"))
    frame = store.read(series, start, newest)
    return split_backtest(
        {series.symbol: frame},
        tf,
        horizon,
        split_ms,
        model=(models or (DEFAULT_MODEL,))[0],
        level=settings.interval_level,
    )


def promote_one(
    series: Series, settings: Settings, store: CandleStore, clock: Clock, gate: Gate
) -> RegistryOutcome:
    """Promote the series' shadow through the gate on a fresh backtest, or say why not."""
    from coinpredict.forecast.registry import PromotionRefused, Registry

    outcome = SeriesOutcome(series, RegistryDetail())
    reg = Registry(models_dir(settings), series.symbol, series.timeframe)
    horizon = settings.policy(series.timeframe).horizon
    try:
        reg.promote(
            gate=gate,
            frame=read_closed(store, series, clock.now_ms(), horizon, "train"),
            horizon=horizon,
            level=settings.interval_level,
            clock=clock,
            by="cli",
        )
        outcome.detail.champion = reg.champion().version
    except PromotionRefused as exc:
        outcome.fail(exc.message)
    return outcome


def rollback_one(series: Series, settings: Settings, clock: Clock) -> RegistryOutcome:
    """Restore the previous champion (the replaced one stays as a version)."""
    from coinpredict.forecast.registry import Registry

    outcome = SeriesOutcome(series, RegistryDetail())
    reg = Registry(models_dir(settings), series.symbol, series.timeframe)
    try:
        reg.rollback(by="cli", clock=clock)
        outcome.detail.champion = reg.champion().version
    except CoinpredictError as exc:
        outcome.fail(exc.message)
    return outcome
