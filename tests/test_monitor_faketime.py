"""End to end under faketime: the CLI sees time pass; status, export and monitor follow it.

One scenario, the rest of the monitor tests inject a clock. The CLI runs as a subprocess under
``faketime`` (libfaketime, LD_PRELOAD) with FAKETIME_DONT_FAKE_MONOTONIC=1 and the
tests/faketime_site/sitecustomize.py that makes ``time.sleep`` work under it.
"""

from __future__ import annotations

import json

from helpers import world as hx
from helpers.world import H1, T0, H, World, run_cli

world = hx.world  # fixtures
receiver = hx.receiver


def test_fresh_stale_hard_stale_fresh_with_one_post_per_transition(world: World, receiver):
    env = {**world.env, "COINPREDICT_ALERT_WEBHOOK": receiver.url}
    s = world.series()
    world.up_to_date(s, T0)  # 2024-01-01 10:02: candle 09:00 closed at 10:00, forecast from it

    def step(when: str, status_code: int) -> dict:
        out = run_cli(["status", "--json"], env, faketime=when)
        assert out.returncode == status_code, out.stdout + out.stderr
        return json.loads(out.stdout)["series"][0]

    def monitor(when: str, code: int) -> list[dict]:
        out = run_cli(["monitor"], env, faketime=when)
        assert out.returncode == code, out.stdout + out.stderr
        return receiver.take()

    doc = step("2024-01-01 10:02:00", 0)
    assert doc["data"]["freshness"] == doc["prediction"]["freshness"] == "fresh"
    assert monitor("2024-01-01 10:02:00", 0) == []  # baseline, all fresh: nothing to say

    doc = step("2024-01-01 12:02:00", 1)
    assert doc["data"]["freshness"] == doc["prediction"]["freshness"] == "stale"
    posts = monitor("2024-01-01 12:02:00", 1)
    assert sorted((p["kind"], p["from"], p["to"]) for p in posts) == [
        ("data", "fresh", "stale"),
        ("prediction", "fresh", "stale"),
    ]
    assert all(p["symbol"] == "BTC/USDT" and p["timeframe"] == "1h" for p in posts)
    assert monitor("2024-01-01 12:10:00", 1) == []  # nothing changed: no POST

    doc = step("2024-01-01 17:02:00", 2)
    assert doc["data"]["freshness"] == doc["prediction"]["freshness"] == "hard_stale"
    out = run_cli(["export"], env, faketime="2024-01-01 17:02:00")
    assert out.returncode == 0, out.stderr  # hard_stale is not a failure of export
    pred = json.loads((world.settings.export_dir / "prediction_BTC_USDT_1h.json").read_text())
    assert pred["freshness"] == "hard_stale" and pred["predictions"] == []
    assert pred["generated_at"].startswith("2024-01-01T17:02:")
    posts = monitor("2024-01-01 17:02:00", 2)
    assert sorted((p["kind"], p["event"], p["severity"]) for p in posts) == [
        ("data", "hard_stale", "critical"),
        ("prediction", "hard_stale", "critical"),
    ]

    last = H1.floor(T0 + 7 * H) - H  # 16:00, closed at 17:00
    world.write_candles(s, last)
    world.forecast(s, last)
    doc = step("2024-01-01 17:05:00", 0)
    assert doc["data"]["last_candle"] == "2024-01-01T16:00:00Z"
    posts = monitor("2024-01-01 17:05:00", 0)
    assert sorted((p["kind"], p["event"], p["from"], p["to"]) for p in posts) == [
        ("data", "recovered", "hard_stale", "fresh"),
        ("prediction", "recovered", "hard_stale", "fresh"),
    ]
    out = run_cli(["export"], env, faketime="2024-01-01 17:05:00")
    assert out.returncode == 0
    pred = json.loads((world.settings.export_dir / "prediction_BTC_USDT_1h.json").read_text())
    assert pred["freshness"] == "fresh"
    assert pred["predictions"][0]["timestamp"] == "2024-01-01T17:00:00Z"
