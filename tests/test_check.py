"""``coinpredict check``: exported JSON vs InfluxDB, and the future-values smoke check."""

from __future__ import annotations

import json

from helpers import world as hx
from helpers.world import T0, H, World, run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.health.exported import smoke_check_predictions
from coinpredict.publish.check import compare_forecast, run_check
from coinpredict.publish.export import export_once

world = hx.world  # fixture
H1 = TIMEFRAMES["1h"]


def _exported(world: World) -> None:
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT", COINPREDICT_TIMEFRAMES="1h,1d")
    for sym in ("BTC/USDT", "ETH/USDT"):
        world.up_to_date(world.series(sym), T0, horizon=6)
        world.up_to_date(world.series(sym, "1d"), T0)
    export_once(world.settings, FixedClock(T0))


def _edit(path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=2))


def test_check_passes_after_export_and_names_a_changed_value(world: World):
    _exported(world)
    result = run_check(world.settings, FixedClock(T0))
    assert result.problems == [] and result.exit_code == 0
    assert len(result.checked) == 4 * 2 + 2  # 4 series x (history + prediction) + 2
    out = run_cli(["check"], world.env)
    assert out.returncode == 0, out.stdout
    target = world.settings.export_dir / "prediction_ETH_USDT_1h.json"
    _edit(target, lambda d: d["predictions"][2].update(close=d["predictions"][2]["close"] + 0.01))
    out = run_cli(["check"], world.env)
    assert out.returncode == 1
    assert "prediction_ETH_USDT_1h.json: predictions[2].close: 152.01, InfluxDB has 152.0" in (
        out.stdout
    )
    doc = json.loads(run_cli(["check", "--json"], world.env).stdout)
    assert doc["ok"] is False and len(doc["problems"]) == 1


def test_check_names_each_kind_of_mismatch(world: World):
    _exported(world)
    d = world.settings.export_dir
    _edit(d / "prediction_BTC_USDT_1h.json", lambda x: x["model"].update(version="v9"))
    _edit(d / "prediction_BTC_USDT_1d.json", lambda x: x.update(predictions=[]))
    (d / "history_ETH_USDT_1d.json").write_text('{"schema_version": 1, "cand')
    _edit(d / "prediction_ETH_USDT_1h.json", lambda x: x["predictions"].pop())
    (d / "manifest.json").unlink()
    problems = run_check(world.settings, FixedClock(T0)).problems
    text = "\n".join(problems)
    assert "prediction_BTC_USDT_1h.json: model.version: 'v9', InfluxDB has 'v1'" in text
    assert "prediction_BTC_USDT_1d.json: predictions: empty while freshness is 'fresh'" in text
    assert "history_ETH_USDT_1d.json: not valid JSON" in text
    assert "prediction_ETH_USDT_1h.json: predictions: 5 steps, InfluxDB has 6" in text
    assert "manifest.json: missing" in text
    assert len(problems) == 5


def test_check_follows_a_newer_forecast_in_influx(world: World):
    _exported(world)
    s = world.series()
    world.forecast(s, H1.last_closed_open(T0), horizon=6, close=999.0, version="v2")
    problems = run_check(world.settings, FixedClock(T0), [s]).problems
    assert any("model.version: 'v1', InfluxDB has 'v2'" in p for p in problems)
    export_once(world.settings, FixedClock(T0 + H))
    assert run_check(world.settings, FixedClock(T0 + H), [s]).problems == []


def test_smoke_check_future_values():
    tf = H1
    last = H1.last_closed_open(T0)
    from coinpredict.base.timeframes import iso

    def doc(entries):
        return {"last_closed_candle": iso(last), "predictions": entries}

    def e(i, close=10.0, lo=9.0, up=11.0, **kw):
        return {
            "timestamp": iso(tf.add(last, i + 1)),
            "close": close,
            "lower": lo,
            "upper": up,
            **kw,
        }

    assert smoke_check_predictions(doc([e(0), e(1)]), tf) == []
    bad_first = doc([{**e(0), "timestamp": iso(tf.add(last, 2))}])
    assert "next boundary after last_closed_candle" in smoke_check_predictions(bad_first, tf)[0]
    gap = doc([e(0), {**e(1), "timestamp": iso(tf.add(last, 3))}])
    assert smoke_check_predictions(gap, tf)[0].startswith("predictions[1].timestamp")
    assert "finite positive" in smoke_check_predictions(doc([e(0, close=-1.0, lo=-2.0)]), tf)[0]
    assert "lower <= close <= upper" in smoke_check_predictions(doc([e(0, close=12.0)]), tf)[0]
    assert "lower_95" in smoke_check_predictions(doc([e(0, lower_95=9.5)]), tf)[0]
    assert compare_forecast({"predictions": [e(0)]}, None)[0].startswith("predictions: served")
