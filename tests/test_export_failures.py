"""Export always completes: a series that cannot be read is published as unknown (blocked),
manifest.json and status.json are written, the other series' files stay valid, and the exit
code and one line say which series failed. Through the CLI against real influxd (one with
authentication, where a user may read one database and not the other)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers.auth import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD
from helpers.world import World, run_cli

from coinpredict.health.exported import (
    parse_iso_z,
    validate_history_doc,
    validate_prediction_doc,
)
from coinpredict.replay.server import ReplayServer
from coinpredict.store.http import InfluxHTTP

DATA = Path(__file__).parent / "data"
SERIES = ("BTC/USDT 1h", "ETH/USDT 1h", "BTC/USDT 1m", "ETH/USDT 1m")


def _load(directory: Path, name: str) -> dict:
    return json.loads((directory / name).read_text())


def _reader_world(auth_env, auth_influxd, allowed: str) -> tuple[World, dict[str, str]]:
    """Data for BTC and ETH, 1m and 1h, written as admin; env of a user who may use only the
    ``allowed`` database ("main" or "1m"): every query on the other one answers 403."""
    env = {
        **auth_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT,ETH/USDT",
        "COINPREDICT_TIMEFRAMES": "1m,1h",
    }
    world = World(env, InfluxHTTP(auth_influxd.url_as(ADMIN, ADMIN_PASSWORD)))
    db = world.settings.influx_db if allowed == "main" else world.settings.influx_db_1m
    auth_influxd.admin(f'GRANT ALL ON "{db}" TO {READER}')
    return world, {**env, "COINPREDICT_INFLUX_URL": auth_influxd.url_as(READER, READER_PASSWORD)}


def _check_published(directory: Path, started_ms: int, readable: list[str], failed: list[str]):
    """manifest.json and status.json are from this run; readable series are valid and fresh;
    failed series are listed as unknown with a reason code."""
    manifest, status = _load(directory, "manifest.json"), _load(directory, "status.json")
    assert parse_iso_z(manifest["generated_at"]) >= started_ms - 1000
    assert parse_iso_z(status["generated_at"]) >= started_ms - 1000
    assert sorted(manifest["ops"]["series_failed"]) == sorted(failed)
    by_label = {f"{s['symbol']} {s['timeframe']}": s for s in status["series"]}
    assert sorted(by_label) == sorted(SERIES)
    for label in readable:
        symbol, tf = label.split()
        stem = f"{symbol.replace('/', '_')}_{tf}"
        history = _load(directory, f"history_{stem}.json")
        assert validate_history_doc(history) == [] and history["freshness"] == "fresh"
        if tf != "1m":
            pred = _load(directory, f"prediction_{stem}.json")
            assert validate_prediction_doc(pred) == [] and pred["freshness"] == "fresh"
            assert pred["predictions"]
    for label in failed:
        entry = by_label[label]
        verdict = entry["data"] if label.endswith("1m") else entry["prediction"]
        assert verdict["freshness"] == "unknown" and verdict["code"] == "read_failed"
        if not label.endswith("1m"):
            symbol = label.split()[0].replace("/", "_")
            pred = _load(directory, f"prediction_{symbol}_1h.json")
            assert pred["freshness"] == "unknown" and pred["predictions"] == []


@pytest.mark.parametrize("allowed", ["main", "1m"])
def test_export_with_a_refused_database_publishes_the_rest(auth_env, auth_influxd, allowed):
    world, env = _reader_world(auth_env, auth_influxd, allowed)
    now = int(time.time() * 1000)
    for label in SERIES:
        symbol, tf = label.split()
        world.up_to_date(world.series(symbol, tf), now)
    started = int(time.time() * 1000)
    out = run_cli(["export"], env)
    assert out.returncode == 4, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("error: export incomplete: 2 of 4 series could not be read (")
    assert "HTTP 403" in lines[0]
    refused = [s for s in SERIES if s.endswith("1m") == (allowed == "main")]
    readable = [s for s in SERIES if s not in refused]
    _check_published(world.settings.export_dir, started, readable, refused)


def test_cycle_with_a_refused_database_exports_the_rest(auth_env, auth_influxd):
    world, env = _reader_world(auth_env, auth_influxd, "main")
    env["COINPREDICT_SYMBOLS"] = "BTC/USDT"
    with ReplayServer(DATA, shift_to_now=True, rate_limit=False) as server:
        started = int(time.time() * 1000)
        out = run_cli(["cycle"], {**env, "COINPREDICT_EXCHANGE_URL": server.url}, timeout=240)
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    reasons = [ln for ln in out.stdout.splitlines() if ln.startswith("export incomplete:")]
    assert len(reasons) == 1 and "1 of 2 series could not be read (BTC/USDT 1m)" in reasons[0]
    directory = world.settings.export_dir
    manifest, status = _load(directory, "manifest.json"), _load(directory, "status.json")
    assert parse_iso_z(manifest["generated_at"]) >= started - 1000
    assert manifest["ops"]["series_failed"] == ["BTC/USDT 1m"]
    m1 = next(s for s in status["series"] if s["timeframe"] == "1m")
    assert m1["data"]["freshness"] == "unknown" and m1["data"]["code"] == "read_failed"
    pred = _load(directory, "prediction_BTC_USDT_1h.json")
    assert validate_prediction_doc(pred) == [] and pred["predictions"]
    assert validate_history_doc(_load(directory, "history_BTC_USDT_1h.json")) == []


def test_a_query_error_for_one_series_exports_the_others(settings_env, influx_http):
    env = {
        **settings_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT,ETH/USDT",
        "COINPREDICT_TIMEFRAMES": "1m,1h",
    }
    world = World(env, influx_http)
    now = int(time.time() * 1000)
    for label in SERIES:
        symbol, tf = label.split()
        world.up_to_date(world.series(symbol, tf), now)
    assert run_cli(["export"], env).returncode == 0
    before = (world.settings.export_dir / "history_BTC_USDT_1m.json").read_bytes()
    influx_http.query(f'DROP DATABASE "{world.settings.influx_db_1m}"', write=True)
    started = int(time.time() * 1000)
    out = run_cli(["export"], env)
    assert out.returncode == 4 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "database not found" in out.stderr and "Traceback" not in out.stderr
    directory = world.settings.export_dir
    assert (directory / "history_BTC_USDT_1m.json").read_bytes() == before  # kept
    _check_published(directory, started, list(SERIES[:2]), list(SERIES[2:]))
