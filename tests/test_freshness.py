"""The one freshness evaluator: pure rules with an injected now, then the I/O layer on influxd."""

from __future__ import annotations

import json
import time

import pytest
from helpers import world as hx
from helpers.world import H1, M1, T0, H, M, World

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import DEFAULT_POLICIES
from coinpredict.base.errors import HealthCode
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES, WEEK_MS, parse_instant
from coinpredict.health.collect import evaluate
from coinpredict.health.freshness import (
    CORRUPT,
    FRESH,
    HARD_STALE,
    STALE,
    UNKNOWN,
    Evaluation,
    SeriesFacts,
    Verdict,
    candle_problem,
    classify,
    data_verdict,
    evaluate_series,
    fmt_duration,
    forecast_problem,
    health_code,
    prediction_verdict,
)
from coinpredict.local.state import PredictState, predict_path, save_predict
from coinpredict.store.predictions import StoredForecast

world = hx.world  # fixture

# the documented defaults (docs/health.md): grace, data hard limit, prediction hard limit
DEFAULTS_TABLE = {
    "1m": (2 * M, 15 * M, None),
    "1h": (5 * M, 6 * H, 3 * H),
    "1d": (30 * M, 3 * DAY_MS, 2 * DAY_MS),
    "1w": (2 * H, 3 * WEEK_MS, 2 * WEEK_MS),
    "1M": (6 * H, 92 * DAY_MS, 62 * DAY_MS),
}


def test_default_thresholds_are_the_spec_table():
    for code, (grace, data_hard, pred_hard) in DEFAULTS_TABLE.items():
        p = DEFAULT_POLICIES[code]
        assert (p.grace_ms, p.data_hard_ms, p.prediction_hard_ms) == (grace, data_hard, pred_hard)


def test_classify_is_strict_at_both_edges():
    assert classify(999, 1000, 5000) == FRESH
    assert classify(1000, 1000, 5000) == STALE
    assert classify(4999, 1000, 5000) == STALE
    assert classify(5000, 1000, 5000) == HARD_STALE


@pytest.mark.parametrize("code", ["1m", "1h", "1d", "1w"])
def test_data_boundaries_per_timeframe(code):
    tf = TIMEFRAMES[code]
    policy = DEFAULT_POLICIES[code]
    grace, hard, _ = DEFAULTS_TABLE[code]
    last_open = tf.floor(parse_instant("2024-03-04T00:00:00Z", setting="t"))
    close = tf.close_time(last_open)
    limit = tf.step_ms + grace
    at = {age: data_verdict(tf, policy, last_open, close + age) for age in (0, limit - 1, limit)}
    assert at[0].freshness == FRESH and at[0].age_ms == 0
    assert at[limit - 1].freshness == FRESH
    assert at[limit].freshness == STALE
    assert "fresh below" in at[limit].reason
    assert data_verdict(tf, policy, last_open, close + hard - 1).freshness == STALE
    v = data_verdict(tf, policy, last_open, close + hard)
    assert v.freshness == HARD_STALE and v.at_ms == last_open and v.age_ms == hard


def test_monthly_uses_the_length_of_the_next_month():
    tf = TIMEFRAMES["1M"]
    policy = DEFAULT_POLICIES["1M"]
    jan = parse_instant("2024-01-01", setting="t")  # closes Feb 1; Feb 2024 has 29 days
    close = tf.close_time(jan)
    limit = 29 * DAY_MS + 6 * H
    assert data_verdict(tf, policy, jan, close + limit - 1).freshness == FRESH
    assert data_verdict(tf, policy, jan, close + limit).freshness == STALE


@pytest.mark.parametrize("code", ["1h", "1d", "1w", "1M"])
def test_prediction_age_is_the_age_of_its_last_candle(code):
    tf = TIMEFRAMES[code]
    policy = DEFAULT_POLICIES[code]
    _, _, pred_hard = DEFAULTS_TABLE[code]
    last = tf.floor(parse_instant("2023-06-05T00:00:00Z", setting="t"))
    close = tf.close_time(last)
    assert prediction_verdict(tf, policy, last, close + 1).freshness == FRESH
    assert prediction_verdict(tf, policy, last, close + pred_hard - 1).freshness == STALE
    assert prediction_verdict(tf, policy, last, close + pred_hard).freshness == HARD_STALE


def test_no_data_future_data_and_errors():
    p = DEFAULT_POLICIES["1h"]
    assert data_verdict(H1, p, None, T0).freshness == HARD_STALE
    assert data_verdict(H1, p, None, T0).reason == "no data"
    assert prediction_verdict(H1, p, None, T0).reason == "no forecast yet"
    future = data_verdict(H1, p, H1.floor(T0) + H, T0)
    assert future.freshness == CORRUPT and "in the future" in future.reason
    skew = data_verdict(H1, p, H1.floor(T0) - H, H1.floor(T0) - 30_000)
    assert skew.freshness == FRESH and skew.age_ms == 0
    assert data_verdict(H1, p, 1, T0, error="read failed").freshness == UNKNOWN
    assert data_verdict(H1, p, 1, T0, problem="bad").freshness == CORRUPT
    with pytest.raises(ValueError):
        prediction_verdict(M1, DEFAULT_POLICIES["1m"], None, T0)


def test_fmt_duration():
    assert fmt_duration(2 * H + 2 * M + 5000) == "2h 2m"
    assert fmt_duration(0) == "0s"
    assert fmt_duration(3 * DAY_MS + H) == "3d 1h"


def _fc(**kw) -> StoredForecast:
    last = H1.floor(T0) - H
    ts = tuple(H1.add(last, i + 1) for i in range(3))
    base = dict(
        series=Series("binance", "BTC/USDT", H1),
        role="champion",
        model_name="naive",
        model_version="v1",
        level=0.8,
        last_closed_ms=last,
        origin_ms=ts[0],
        issued_at_ms=T0,
        timestamps=ts,
        close=(10.0, 11.0, 12.0),
        lower=(9.0, 10.0, 11.0),
        upper=(11.0, 12.0, 13.0),
        lower_95=(8.0, 9.0, 10.0),
        upper_95=(12.0, 13.0, 14.0),
    )
    base.update(kw)
    return StoredForecast(**base)


def test_forecast_problems():
    assert forecast_problem(H1, _fc()) is None
    assert "lower <= close <= upper" in forecast_problem(H1, _fc(lower=(9.0, 11.5, 11.0)))
    assert "non-positive" in forecast_problem(H1, _fc(close=(-1.0, 11.0, 12.0)))
    assert "is not the close" in forecast_problem(H1, _fc(origin_ms=T0))
    good = _fc().timestamps
    assert "expected" in forecast_problem(H1, _fc(timestamps=(good[0], good[2], good[2] + H)))
    assert "95%" in forecast_problem(H1, _fc(lower_95=(9.5, 9.0, 10.0)))
    assert "missing" in forecast_problem(H1, _fc(close=(10.0,)))
    assert "level" in forecast_problem(H1, _fc(level=1.5))


def test_candle_problems():
    t = H1.floor(T0) - H
    assert candle_problem(H1, (t, 10.0, 12.0, 9.0, 11.0, 1.0)) is None
    assert "bracket" in candle_problem(H1, (t, 10.0, 9.5, 9.0, 11.0, 1.0))
    assert "non-positive" in candle_problem(H1, (t, 0.0, 12.0, 9.0, 11.0, 1.0))
    assert "grid" in candle_problem(H1, (t + 1, 10.0, 12.0, 9.0, 11.0, 1.0))
    assert "missing" in candle_problem(H1, (t, None, 12.0, 9.0, 11.0, 1.0))


def test_evaluate_series_and_exit_code_precedence():
    s = Series("binance", "BTC/USDT", H1)
    policy = DEFAULT_POLICIES["1h"]
    fc = _fc()
    row = (fc.last_closed_ms, 10.0, 12.0, 9.0, 11.0, 1.0)
    fresh = evaluate_series(SeriesFacts(s, latest=row, forecast=fc), policy, T0)
    assert fresh.data.freshness == FRESH and fresh.prediction.freshness == FRESH
    assert health_code(Evaluation(T0, [fresh])) == HealthCode.OK
    failed = PredictState(status="failed", reason="model exploded")
    degraded = evaluate_series(
        SeriesFacts(s, latest=row, forecast=fc, predict_state=failed), policy, T0
    )
    assert degraded.degraded and degraded.degraded_reason == "model exploded"
    assert health_code(Evaluation(T0, [fresh, degraded])) == HealthCode.WARNING
    stale = evaluate_series(SeriesFacts(s, latest=row, forecast=fc), policy, T0 + 2 * H)
    assert stale.states == [STALE, STALE]
    assert health_code(Evaluation(T0, [stale])) == HealthCode.WARNING
    bad = evaluate_series(SeriesFacts(s, latest=row, forecast=_fc(level=2.0)), policy, T0)
    assert bad.prediction.freshness == CORRUPT and bad.blocked
    unknown = evaluate_series(SeriesFacts(s, data_error="x", forecast_error="x"), policy, T0)
    assert health_code(Evaluation(T0, [unknown])) == HealthCode.UNKNOWN
    assert health_code(Evaluation(T0, [unknown, bad])) == HealthCode.CRITICAL
    assert health_code(Evaluation(T0, [fresh], store_error="down")) == HealthCode.UNKNOWN
    bad_candle = (row[0], 10.0, 9.0, 9.5, 11.0, 1.0)
    corrupt_data = evaluate_series(SeriesFacts(s, latest=bad_candle, forecast=fc), policy, T0)
    assert corrupt_data.data.freshness == CORRUPT
    assert corrupt_data.served.freshness == CORRUPT  # never serve a forecast of corrupt data
    one_minute = evaluate_series(
        SeriesFacts(Series("binance", "BTC/USDT", M1)), DEFAULT_POLICIES["1m"], T0
    )
    assert one_minute.prediction is None and one_minute.served is None
    assert isinstance(Verdict(FRESH).blocked, bool)


# --- the I/O layer on a real influxd ------------------------------------------------------------


def test_evaluate_real_store_moves_with_the_clock(world: World):
    NOW = H1.floor(int(time.time() * 1000)) - 3 * H + 2 * M  # 1m data must be within retention
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT", COINPREDICT_TIMEFRAMES="1m,1h")
    btc, eth, btc1m = world.series(), world.series("ETH/USDT"), world.series(tf="1m")
    world.up_to_date(btc, NOW)
    world.up_to_date(eth, NOW)
    world.up_to_date(btc1m, NOW)
    ev = evaluate(world.settings, FixedClock(NOW))
    by = {(h.series.symbol, h.series.timeframe.code): h for h in ev.series}
    assert by[("BTC/USDT", "1h")].states == [FRESH, FRESH]
    assert by[("BTC/USDT", "1h")].data.at_ms == H1.floor(NOW) - H
    assert by[("BTC/USDT", "1m")].states == [FRESH]
    assert by[("ETH/USDT", "1m")].states == [HARD_STALE]  # no 1m data for ETH
    assert ev.exit_code == HealthCode.CRITICAL
    world.write_candles(world.series("ETH/USDT", "1m"), M1.last_closed_open(NOW))
    assert evaluate(world.settings, FixedClock(NOW)).exit_code == HealthCode.OK
    later = evaluate(world.settings, FixedClock(NOW + 2 * H))
    assert {h.series.timeframe.code: h.data.freshness for h in later.series} == {
        "1m": HARD_STALE,
        "1h": STALE,
    }
    world.reload(COINPREDICT_TIMEFRAMES="1h")
    assert evaluate(world.settings, FixedClock(NOW + 2 * H)).exit_code == HealthCode.WARNING
    assert evaluate(world.settings, FixedClock(NOW + 7 * H)).exit_code == HealthCode.CRITICAL


def test_latest_forecast_reader_matches_prediction_store(world: World):
    s = world.series()
    last = H1.last_closed_open(T0)
    world.write_candles(s, last)
    world.forecast(s, last - 2 * H, horizon=5, close=100.0)
    world.forecast(s, last, horizon=3, close=200.0, version="v2")
    world.forecast(s, last, horizon=3, close=300.0, role="shadow")
    ev = evaluate(world.settings, FixedClock(T0))
    assert ev.series[0].forecast == world.predictions.latest(s)
    assert ev.series[0].forecast.model_version == "v2"


def test_impossible_stored_forecast_and_truncated_predict_state_are_corrupt(world: World):
    s = world.series()
    last = H1.last_closed_open(T0)
    world.write_candles(s, last)
    fc = world.forecast(s, last)
    # a hand-written point with impossible values: lower above close
    world.http.write(
        world.settings.influx_db,
        (
            "predictions,exchange=binance,symbol=BTC/USDT,timeframe=1h,role=champion,horizon=2 "
            f"close=1.0,lower=5.0,upper=9.0,lower_95=0.5,upper_95=10.0,level=0.8,"
            f"origin={fc.origin_ms}i,last_closed={last}i,issued_at={T0}i,"
            f'model="naive",version="v1" {fc.timestamps[1]}'
        ).encode(),
    )
    h = evaluate(world.settings, FixedClock(T0)).series[0]
    assert h.prediction.freshness == CORRUPT and "step 2" in h.prediction.reason
    world.forecast(s, last)  # rewrite the same points: valid again
    save_predict(world.settings.state_dir, s, PredictState(status="ok", at=T0))
    assert evaluate(world.settings, FixedClock(T0)).exit_code == HealthCode.OK
    path = predict_path(world.settings.state_dir, s)
    path.write_text(path.read_text()[:10])
    ev = evaluate(world.settings, FixedClock(T0))
    assert ev.series[0].prediction.freshness == CORRUPT
    assert "predict state" in ev.series[0].prediction.reason
    assert ev.exit_code == HealthCode.CRITICAL
    path.write_text(json.dumps({"status": "failed", "reason": "boom", "at": T0}))
    ev = evaluate(world.settings, FixedClock(T0))
    assert ev.series[0].degraded and ev.exit_code == HealthCode.WARNING


def test_influx_unreachable_is_unknown_but_local_facts_remain(world: World):
    settings = world.reload(COINPREDICT_INFLUX_URL="http://127.0.0.1:9")
    save_predict(settings.state_dir, world.series(), PredictState(status="failed", reason="x"))
    ev = evaluate(settings, FixedClock(T0))
    assert ev.store_error and "unreachable" in ev.store_error
    assert ev.series[0].states == [UNKNOWN, UNKNOWN]
    assert ev.series[0].degraded
    assert ev.exit_code == HealthCode.UNKNOWN
