"""predict end to end on real candles in a real influxd."""

from dataclasses import replace

import pytest
from helpers.samples import rows

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import parse_timeframes
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.jobs.runner import run_predict_job
from coinpredict.local.state import load_predict
from coinpredict.store.candles import CandleStore
from coinpredict.store.predictions import PredictionStore
from coinpredict.store.setup import init_storage

BTC_1D = rows("BTC_USDT-1d.csv")
ETH_1D = rows("ETH_USDT-1d.csv")
LAST = BTC_1D[-1][0]
D1 = TIMEFRAMES["1d"]


@pytest.fixture
def env(settings, influx_http):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    store.write(Series("binance", "BTC/USDT", D1), BTC_1D)
    store.write(Series("binance", "ETH/USDT", D1), ETH_1D)
    s = replace(settings, symbols=("BTC/USDT", "ETH/USDT"), timeframes=parse_timeframes("1d"))
    return s, store, PredictionStore(influx_http, db=settings.influx_db)


def test_forecast_starts_at_next_boundary_and_is_stored(env):
    settings, store, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    report = run_predict_job(settings, clock=clock)
    assert report.exit_code == 0, report.as_dict()
    fc = pstore.latest(Series("binance", "BTC/USDT", D1))
    assert fc.last_closed_ms == LAST
    assert fc.timestamps[0] == D1.close_time(LAST) == fc.origin_ms
    assert list(fc.timestamps) == [D1.add(LAST, h) for h in range(1, 15)]
    assert all(
        lo95 <= lo <= c <= hi <= hi95
        for lo95, lo, c, hi, hi95 in zip(
            fc.lower_95, fc.lower, fc.close, fc.upper, fc.upper_95, strict=True
        )
    )
    assert fc.model_name == "naive"
    st = load_predict(settings.state_dir, Series("binance", "BTC/USDT", D1))
    assert st.status == "ok" and not st.degraded and st.last_new_candle == LAST


def test_no_new_candle_means_skipped(env):
    settings, store, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    run_predict_job(settings, clock=clock)
    clock.advance(3_600_000)
    report = run_predict_job(settings, clock=clock)
    assert [o.detail.skipped for o in report.outcomes] == [True, True]
    assert report.notes == ["2 of 2 series skipped: no new closed candle"]


def test_a_forecast_lost_from_influxdb_is_made_again_though_the_state_says_done(env):
    """InfluxDB is the source of truth: the new-candle trigger skips only when the forecast the
    state says it served is really stored."""
    settings, store, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    run_predict_job(settings, clock=clock)
    btc = Series("binance", "BTC/USDT", D1)
    origin = pstore.newest_origin(btc)
    assert origin is not None and load_predict(settings.state_dir, btc).last_good_origin == origin
    pstore.http.query('DROP MEASUREMENT "predictions"', db=pstore.db, write=True)
    report = run_predict_job(settings, clock=clock)
    assert [o.detail.skipped for o in report.outcomes] == [False, False]
    assert pstore.newest_origin(btc) == origin
    assert [o.detail.skipped for o in run_predict_job(settings, clock=clock).outcomes] == [
        True,
        True,
    ]


def test_open_candle_is_never_used(env):
    settings, store, pstore = env
    clock = FixedClock(LAST + 12 * 3_600_000)  # LAST is still open
    run_predict_job(settings, clock=clock)
    fc = pstore.latest(Series("binance", "BTC/USDT", D1))
    assert fc.last_closed_ms == LAST - DAY_MS


def test_insufficient_history_is_a_clear_outcome(settings, influx_http):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    store.write(Series("binance", "BTC/USDT", D1), BTC_1D[:5])
    store.write(Series("binance", "ETH/USDT", D1), ETH_1D)
    s = replace(settings, symbols=("BTC/USDT", "ETH/USDT"), timeframes=parse_timeframes("1d"))
    clock = FixedClock(ETH_1D[-1][0] + DAY_MS + 1)
    report = run_predict_job(s, clock=clock)
    assert report.exit_code == 4
    btc, eth = report.outcomes
    assert not btc.ok and btc.error.startswith("insufficient history: 5 candles, need at least")
    assert eth.ok
    assert load_predict(s.state_dir, btc.series).degraded


def test_unreadable_predict_state_is_forecast_afresh(env, caplog):
    from coinpredict.local.state import predict_path

    settings, store, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    btc = Series("binance", "BTC/USDT", D1)
    path = predict_path(settings.state_dir, btc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"status": "ok", "la')  # torn by hand or by a failing disk
    report = run_predict_job(settings, clock=clock)
    assert report.exit_code == 0, report.as_dict()
    assert load_predict(settings.state_dir, btc).status == "ok"  # a good state again
    assert "forecasting as if it had never run" in caplog.text


def test_online_calibration_scores_served_forecasts_and_restarts_per_model(env):
    """Predict once a day for 20 days: every served step whose candle closed is scored once,
    the served bands are the model's recalibrated, and a new champion starts afresh."""
    from coinpredict.forecast import registry
    from coinpredict.serving.predict import calibration_path, load_calibration, models_dir

    settings, store, pstore = env
    btc = Series("binance", "BTC/USDT", D1)
    start = LAST - 20 * DAY_MS
    clock = FixedClock(start + DAY_MS + 60_000)
    for _ in range(21):
        assert run_predict_job(settings, clock=clock).exit_code == 0
        clock.advance(DAY_MS)
    state = load_calibration(settings.state_dir, btc)
    assert state.version == "builtin" and state.theta.shape == (14, 4)
    # forecast i (i = 0..20 days after start) has min(14, 20 - i) steps closed by the last run
    assert state.scored == sum(min(14, 20 - i) for i in range(21))
    assert state.last_scored == LAST and len(state.pending) == 14
    served = pstore.latest(btc)
    frame = store.read(btc, LAST - 3000 * DAY_MS, LAST)
    raw = registry.forecast_for_series(models_dir(settings), "BTC/USDT", "1d", frame, 14)
    assert served.last_closed_ms == raw.origin_ms == LAST
    assert served.close == tuple(raw.close)
    assert served.lower != tuple(raw.lower)  # recalibrated from 266 scored steps
    assert [e[1] for e in state.pending[-1].edges] == list(served.upper)
    # a torn state file means starting afresh, never a failed predict
    calibration_path(settings.state_dir, btc).write_text('{"format_version": 1, "th')
    assert run_predict_job(settings, clock=clock, force=True).exit_code == 0
    assert load_calibration(settings.state_dir, btc).scored == 0


def test_shadow_forecasts_are_calibrated_online_with_their_own_state(env):
    """A shadow's stored forecasts go through the same online calibration as the champion's, on
    a state of its own; when that shadow is promoted, the champion goes on from it."""
    from coinpredict.forecast import registry
    from coinpredict.forecast.models import NaiveForecaster
    from coinpredict.forecast.registry import Gate
    from coinpredict.serving.predict import load_calibration, models_dir

    settings, store, pstore = env
    btc = Series("binance", "BTC/USDT", D1)
    start = LAST - 25 * DAY_MS
    frame = store.read(btc, start - 3000 * DAY_MS, start)
    mdir = models_dir(settings)
    metrics = {
        "samples": 1000,
        "relative_mae": 1.0,
        "relative_pinball": 0.9,
        "coverage": 0.8,
        "coverage_95": 0.95,
        "relative_width": 0.9,
        "relative_interval_score": 0.9,
    }
    # a naive fitted once (fixed quantiles), so its bands differ from the built-in champion's
    v1 = registry.register_shadow(
        mdir, "BTC/USDT", "1d", NaiveForecaster("1d", 14).fit(frame), metrics=metrics
    )
    clock = FixedClock(start + DAY_MS + 60_000)
    for _ in range(21):
        assert run_predict_job(settings, clock=clock).exit_code == 0
        clock.advance(DAY_MS)
    champ = load_calibration(settings.state_dir, btc)
    shadow = load_calibration(settings.state_dir, btc, "shadow")
    assert (champ.version, shadow.version) == ("builtin", v1)
    assert shadow.scored == champ.scored == sum(min(14, 20 - i) for i in range(21))
    stored = pstore.latest(btc, "shadow")
    now_frame = store.read(btc, start - 3000 * DAY_MS, stored.last_closed_ms)
    raw = registry.forecast_for_series(mdir, "BTC/USDT", "1d", now_frame, 14, role="shadow")
    assert stored.close == tuple(raw.close) and stored.lower != tuple(raw.lower)
    assert [e[0] for e in shadow.pending[-1].edges] == list(stored.lower)
    registry.promote(mdir, "BTC/USDT", "1d", gate=Gate())
    assert run_predict_job(settings, clock=clock).exit_code == 0
    after = load_calibration(settings.state_dir, btc)
    assert after.version == v1 and after.scored == shadow.scored + 14


def test_the_forecast_predict_reports_stored_is_what_influxdb_gives_back(env):
    """``coinpredict cycle`` hands the forecast predict stored, and the newest candles it was
    made from, to export instead of reading them back: they must equal the reads, field for
    field and float for float."""
    from coinpredict.serving.predict import predict_and_store
    from coinpredict.serving.windows import newest_rows

    settings, store, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    btc = Series("binance", "BTC/USDT", D1)
    stored_rows = store.read(btc).rows()
    for run in ("full read", "cached window"):
        done = predict_and_store(btc, settings, store, pstore, clock, force=True)
        assert done.outcome.ok and done.forecast is not None, run
        assert done.forecast == pstore.latest(btc)
        assert [x.hex() for x in done.forecast.upper] == [x.hex() for x in pstore.latest(btc).upper]
        newest = newest_rows(done.window, 300)
        assert newest == stored_rows[-300:] and len(newest) == 300, run
        assert [type(x) for x in newest[-1]] == [int, *[float] * 5]
        assert newest_rows(done.window, done.window.height + 1) is None  # fewer: export reads
    done = predict_and_store(btc, settings, store, pstore, clock)
    assert (
        done.outcome.detail.skipped and done.forecast is None
    )  # nothing stored: export reads InfluxDB
