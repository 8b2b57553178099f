"""Model lifecycle end to end: train -> shadow -> gate -> promote -> rollback. Kills while the
registry is replaced are in tests/test_drills.py (bench/drills.py --short)."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers.samples import rows

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import parse_timeframes
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.forecast.registry import Gate, Registry
from coinpredict.jobs.runner import run_predict_job
from coinpredict.jobs.runner import run_train_job as run_train
from coinpredict.local.state import load_predict
from coinpredict.serving.predict import load_calibration, models_dir
from coinpredict.store.candles import CandleStore
from coinpredict.store.predictions import PredictionStore
from coinpredict.store.setup import init_storage

D1 = TIMEFRAMES["1d"]
BTC_1D = rows("BTC_USDT-1d.csv")
ETH_1D = rows("ETH_USDT-1d.csv")
LAST = BTC_1D[-1][0]
BTC = Series("binance", "BTC/USDT", D1)
ETH = Series("binance", "ETH/USDT", D1)


@pytest.fixture
def env(settings, influx_http):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    store.write(BTC, BTC_1D)
    store.write(ETH, ETH_1D)
    s = replace(settings, symbols=("BTC/USDT", "ETH/USDT"), timeframes=parse_timeframes("1d"))
    return s, PredictionStore(influx_http, db=settings.influx_db)


# a gate any sensible shadow passes: these tests are about what happens after a promotion
LENIENT = Gate(margin=0.0, coverage_tolerance=0.2, compare_on="relative_mae")


def test_train_registers_shadow_and_predict_scores_it_unserved(env):
    settings, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    report = run_train(settings, clock=clock)
    assert report.exit_code == 0, report.as_dict()
    assert [o.detail.trained.version for o in report.outcomes] == ["v1", "v1"]
    reg = Registry(models_dir(settings), "BTC/USDT", D1)
    assert reg.champion().is_builtin and reg.shadow().version == "v1"
    run_predict_job(settings, clock=clock)
    assert pstore.latest(BTC, "champion").model_name == "naive"
    shadow_fc = pstore.latest(BTC, "shadow")
    assert shadow_fc is not None and shadow_fc.model_version == "v1"


def test_gate_refuses_then_promotes_then_rollback_serves_previous(env):
    settings, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    report = run_train(settings, promote=True, gate=Gate(margin=0.5), clock=clock)
    refusal = report.outcomes[0].detail.promoted
    assert refusal.startswith(
        "refused: promotion refused: shadow v1 does not beat champion "
        "builtin by the margin 50.00%: relative "
    )
    reg = Registry(models_dir(settings), "BTC/USDT", D1)
    assert reg.champion().is_builtin
    # a gate the model can pass: no margin over the naive champion, relaxed coverage
    report = run_train(
        settings,
        promote=True,
        clock=clock,
        gate=LENIENT,
    )
    assert report.outcomes[0].detail.promoted == "yes", report.as_dict()
    assert reg.champion().version == "v2"
    run_predict_job(settings, clock=clock, force=True)
    assert pstore.latest(BTC).model_version == "v2"
    # the online calibration belongs to the model it scored: a promotion starts it afresh
    assert load_calibration(settings.state_dir, BTC).version == "v2"
    reg.rollback(by="test")
    assert reg.champion().is_builtin
    clock.advance(1000)
    run_predict_job(settings, clock=clock, force=True)
    assert pstore.latest(BTC).model_version == "builtin"
    assert load_calibration(settings.state_dir, BTC).version == "builtin"
    actions = [h["action"] for h in reg.state().history]
    assert actions == [
        "register_shadow",
        "promote_refused",
        "register_shadow",
        "promote",
        "rollback",
    ]


def test_corrupt_model_file_degrades_only_that_series(env):
    settings, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    run_train(settings, promote=True, clock=clock, gate=LENIENT)
    first = run_predict_job(settings, clock=clock)
    assert first.exit_code == 0
    good = pstore.latest(BTC)
    artifact = models_dir(settings) / "BTC_USDT_1d" / "v1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:100])  # truncated
    report = run_predict_job(settings, clock=clock, force=True)
    assert report.exit_code == 4
    btc, eth = report.outcomes
    assert not btc.ok and "model.joblib" in btc.error
    assert eth.ok
    assert load_predict(settings.state_dir, BTC).degraded
    assert not load_predict(settings.state_dir, ETH).degraded
    assert pstore.latest(BTC) == good  # the last good forecast is kept


def test_models_cli_list_report_promote_refusal(env, settings_env):
    import json

    settings, pstore = env
    clock = FixedClock(LAST + DAY_MS + 60_000)
    run_train(settings, clock=clock)
    env_vars = {
        **os.environ,
        **settings_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT",
        "COINPREDICT_TIMEFRAMES": "1d",
    }

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "coinpredict", *args],
            env=env_vars,
            capture_output=True,
            text=True,
            timeout=300,
        )

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(v["version"], v["role"]) for v in listed[0]["versions"]] == [
        ("builtin", "champion"),
        ("v1", "shadow"),
    ]
    out = cli("models", "report", "--json", "--origins", "30")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)[0]
    assert report["champion"]["version"] == "builtin" and report["shadow"]["version"] == "v1"
    for role in ("champion", "shadow", "naive"):
        metrics = report["backtest"][role]
        assert {
            "relative_mae",
            "mase",
            "coverage",
            "coverage_95",
            "width_pct",
            "relative_pinball",
            "samples",
        } <= set(metrics)
    assert report["live"]["champion"] == {"samples": 0}  # nothing realised yet
    refused = cli("models", "promote", "--margin", "0.5", "--json")
    assert refused.returncode == 1
    error = json.loads(refused.stdout)["series"][0]["error"]
    assert error.startswith(
        "promotion refused: shadow v1 does not beat champion builtin by the "
        "margin 50.00%: relative "
    )


def test_too_short_series_is_skipped_not_failed(settings, influx_http):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    store.write(BTC, BTC_1D[:60])
    s = replace(settings, symbols=("BTC/USDT",), timeframes=parse_timeframes("1d"))
    report = run_train(s, clock=FixedClock(BTC_1D[59][0] + DAY_MS + 1))
    assert report.exit_code == 0
    assert report.outcomes[0].detail.skipped.startswith("insufficient history: 60 candles")
    assert Registry(models_dir(s), "BTC/USDT", D1).shadow() is None


def test_registry_changes_wait_for_the_train_lock(env):
    from coinpredict.base.errors import LockBusyError
    from coinpredict.jobs.runner import run_rollback_job
    from coinpredict.local.locks import job_locks

    settings, _ = env
    s = replace(settings, lock_wait_ms=100)
    with job_locks(settings.state_dir / "locks", ["train"], wait_ms=0, job="train"):
        with pytest.raises(LockBusyError, match=r"^another models-rollback run holds the lock "):
            run_rollback_job(s, clock=FixedClock(LAST))
    report = run_rollback_job(s, clock=FixedClock(LAST))
    assert report.exit_code == 1  # nothing to roll back to, said per series
    assert report.outcomes[0].error == (
        "cannot roll back BTC/USDT 1d: no previous champion (champion is builtin)"
    )


def test_train_prunes_old_versions_but_never_the_champion(env):
    settings, _ = env
    s = replace(settings, symbols=("BTC/USDT",), model_keep=1)
    clock = FixedClock(LAST + DAY_MS + 60_000)
    gate = LENIENT
    run_train(s, promote=True, gate=gate, clock=clock)  # v1 becomes champion
    run_train(s, clock=clock)  # v2 shadow
    report = run_train(s, clock=clock)  # v3 shadow replaces v2, which is pruned
    assert report.outcomes[0].detail.pruned == "v2"
    reg = Registry(models_dir(s), "BTC/USDT", D1)
    assert [v["version"] for v in reg.versions()] == ["builtin", "v1", "v3"]
    assert reg.champion().version == "v1" and reg.shadow().version == "v3"
    assert not (models_dir(s) / "BTC_USDT_1d" / "v2").exists()
