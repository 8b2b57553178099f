"""``status``: the status JSON, exit codes 0-3, corrupt artifacts, light and fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from helpers import world as hx
from helpers.importcheck import HEAVY, cli_imports
from helpers.world import ROOT, World, run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.health.status import job_stats
from coinpredict.local.runs import recorded_run
from coinpredict.local.state import PredictState, save_predict
from coinpredict.publish.export import export_once

world = hx.world  # fixture


def _now() -> int:
    return int(time.time() * 1000)


def test_status_json_fields_and_exit_0(world: World):
    now = _now()
    world.reload(COINPREDICT_TIMEFRAMES="1m,1h")
    world.up_to_date(world.series(), now)
    world.up_to_date(world.series(tf="1m"), now)
    out = run_cli(["status", "--json"], world.env)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["generated_at"].endswith("Z")
    by = {s["timeframe"]: s for s in doc["series"]}
    h1 = by["1h"]
    assert h1["symbol"] == "BTC/USDT"
    assert h1["data"]["freshness"] == "fresh"
    assert h1["data"]["last_candle"].endswith("Z") and h1["data"]["age_seconds"] >= 0
    assert h1["prediction"]["freshness"] == "fresh"
    assert h1["prediction"]["degraded"] is False
    assert h1["prediction"]["last_closed_candle"] == h1["data"]["last_candle"]
    assert by["1m"]["prediction"] is None
    assert doc["health"] == "ok" and doc["influxdb"]["reachable"] is True


def test_status_exit_codes_1_2_3_and_table(world: World):
    now = _now()
    s = world.series()
    world.up_to_date(s, now)
    save_predict(world.settings.state_dir, s, PredictState(status="failed", reason="boom"))
    out = run_cli(["status", "--json"], world.env)
    assert out.returncode == 1
    assert json.loads(out.stdout)["series"][0]["prediction"]["degraded"] is True
    table = run_cli(["status"], world.env)
    assert table.returncode == 1
    assert "BTC/USDT 1h" in table.stdout and "DEGRADED" in table.stdout
    assert "degraded: boom" in table.stdout
    # an exported file that was truncated by hand is corrupt, never served
    save_predict(world.settings.state_dir, s, PredictState(status="ok"))
    export_once(world.settings, FixedClock(now))
    target = world.settings.export_dir / "prediction_BTC_USDT_1h.json"
    target.write_bytes(target.read_bytes()[:100])
    out = run_cli(["status", "--json"], world.env)
    assert out.returncode == 2
    pred = json.loads(out.stdout)["series"][0]["prediction"]
    assert pred["freshness"] == "corrupt"
    assert pred["reason"].startswith("prediction_BTC_USDT_1h.json: not valid JSON")
    export_once(world.settings, FixedClock(now))  # export repairs it
    assert run_cli(["status", "--json"], world.env).returncode == 0
    down = run_cli(
        ["status", "--json"], {**world.env, "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9"}
    )
    assert down.returncode == 3
    doc = json.loads(down.stdout)
    assert doc["influxdb"]["reachable"] is False
    assert doc["series"][0]["data"]["freshness"] == "unknown"
    assert doc["series"][0]["predict"]["status"] == "ok"  # what is known is still printed


def test_status_narrowing_and_job_statistics(world: World):
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT")
    clock = FixedClock(_now())
    for seconds, outcome in [(1, "ok"), (2, "ok"), (3, "ok"), (60, "failed")]:
        try:
            with recorded_run(world.settings.state_dir, "ingest", clock, locks=[], wait_ms=0) as r:
                clock.advance(seconds * 1000)
                if outcome == "failed":
                    raise RuntimeError("exchange down")
                r.outcome = outcome
        except RuntimeError:
            pass
    out = run_cli(["status", "--json", "-s", "ETH/USDT"], world.env)
    doc = json.loads(out.stdout)
    assert [s["symbol"] for s in doc["series"]] == ["ETH/USDT"]
    ingest = doc["jobs"]["ingest"]
    assert ingest["last_outcome"] == "failed" and ingest["last_message"] == "exchange down"
    assert ingest["duration_p50_s"] == 2.0 and ingest["duration_p95_s"] == 60.0
    assert ingest["failure_rate"] == 0.25 and ingest["overrun_rate"] == 0.25  # budget 50 s
    assert ingest["last_success"] is not None
    assert job_stats([]) is None


def test_status_run_is_light(world: World):
    """A real status run imports no heavy library (its speed is measured by bench/publish.py)."""
    now = _now()
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT", COINPREDICT_TIMEFRAMES="1h,1d")
    for sym in ("BTC/USDT", "ETH/USDT"):
        world.up_to_date(world.series(sym), now)
        world.up_to_date(world.series(sym, "1d"), now)
    env = {**os.environ, **world.env}
    code, out, imported = cli_imports(["status", "--json"], env)
    assert code == 0, out
    assert "coinpredict" in imported
    for heavy in HEAVY:
        assert heavy not in imported, f"status imported {heavy}"


def test_health_modules_import_neither_numpy_nor_polars():
    modules = (
        "coinpredict.health.status, coinpredict.health.monitor, coinpredict.health.metrics, "
        "coinpredict.publish.artifacts, coinpredict.publish.check"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    for heavy in ("ccxt", "sklearn", "joblib", "scipy", "polars", "numpy"):
        assert heavy not in imported, f"the health modules import {heavy}"
