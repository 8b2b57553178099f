"""``monitor`` with an injected clock: transitions, escalation, webhook retries, InfluxDB down."""

from __future__ import annotations

import json

from helpers import world as hx
from helpers.world import T0, H, Receiver, World, run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import DEFAULT_POLICIES
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.health import monitor as mon
from coinpredict.health.freshness import (
    CORRUPT,
    FRESH,
    Evaluation,
    SeriesFacts,
    evaluate_series,
)
from coinpredict.health.monitor import WebhookError, deliver, transitions
from coinpredict.jobs.runner import run_monitor_job as run_monitor
from coinpredict.local.runs import history
from coinpredict.local.state import PredictState, save_predict

world = hx.world  # fixtures
receiver = hx.receiver
H1 = TIMEFRAMES["1h"]
D1 = TIMEFRAMES["1d"]


def _ev(now: int, *, last: int, tf=H1, degraded=False, store_error=None, bad=False) -> Evaluation:
    s = Series("binance", "BTC/USDT", tf)
    row = (last, 10.0, 12.0, 9.0, 11.0, 1.0)
    if bad:
        row = (last, 10.0, 1.0, 9.0, 11.0, 1.0)
    facts = SeriesFacts(
        s,
        latest=None if store_error else row,
        data_error=store_error,
        forecast_error=store_error,
        predict_state=PredictState(status="failed", reason="x") if degraded else None,
    )
    h = evaluate_series(facts, DEFAULT_POLICIES[tf.code], now)
    return Evaluation(now, [h], store_error=store_error)


def _events(alerts) -> list[tuple[str, str]]:
    return sorted((a.kind, a.event) for a in alerts)


def test_transitions_one_alert_each_and_baseline():
    last = H1.last_closed_open(T0)
    alerts, state = transitions(None, _ev(T0, last=last), 6 * H)
    # data fresh; no forecast at all is hard_stale: the baseline reports only non-fresh
    assert _events(alerts) == [("prediction", "hard_stale")]
    alerts, state = transitions(state, _ev(T0 + 60_000, last=last), 6 * H)
    assert alerts == []
    alerts, state = transitions(state, _ev(T0 + 2 * H, last=last), 6 * H)
    assert _events(alerts) == [("data", "stale")]
    assert alerts[0].previous == FRESH and alerts[0].severity == "warning"
    alerts, state = transitions(state, _ev(T0 + 2 * H, last=last, bad=True), 6 * H)
    assert _events(alerts) == [("data", CORRUPT)]
    alerts, state = transitions(state, _ev(T0, last=last, degraded=True), 6 * H)
    assert _events(alerts) == [("data", "recovered"), ("degraded", "degraded")]
    alerts, state = transitions(state, _ev(T0, last=last, degraded=True), 6 * H)
    assert alerts == []
    alerts, state = transitions(state, _ev(T0, last=last), 6 * H)
    assert _events(alerts) == [("degraded", "degraded_cleared")]
    payload = alerts[0].payload()
    assert payload["source"] == "coinpredict" and payload["symbol"] == "BTC/USDT"
    assert payload["at"].endswith("Z") and payload["text"]
    json.dumps(payload)


def test_stale_escalates_exactly_once():
    last = D1.last_closed_open(T0)
    close = D1.close_time(last)
    limit = D1.step_ms + DEFAULT_POLICIES["1d"].grace_ms
    alerts, state = transitions(None, _ev(close + 1000, last=last, tf=D1), 6 * H)
    alerts, state = transitions(state, _ev(close + limit + H, last=last, tf=D1), 6 * H)
    assert _events(alerts) == [("data", "stale")]
    alerts, state = transitions(state, _ev(close + limit + 6 * H, last=last, tf=D1), 6 * H)
    assert _events(alerts) == [("data", "stale_escalated")]
    assert alerts[0].severity == "critical"
    alerts, state = transitions(state, _ev(close + limit + 9 * H, last=last, tf=D1), 6 * H)
    assert alerts == []
    alerts, state = transitions(state, _ev(close + 1000, last=last, tf=D1), 6 * H)
    assert _events(alerts) == [("data", "recovered")]
    assert state["series"]["binance|BTC/USDT|1d"]["escalated"] == []


def test_influx_down_is_one_alert_and_series_states_are_kept():
    last = H1.last_closed_open(T0)
    _, state = transitions(None, _ev(T0, last=last), 6 * H)
    alerts, state = transitions(state, _ev(T0, last=last, store_error="refused"), 6 * H)
    assert _events(alerts) == [("influxdb", "influxdb_unreachable")]
    alerts, state = transitions(state, _ev(T0, last=last, store_error="refused"), 6 * H)
    assert alerts == []
    alerts, state = transitions(state, _ev(T0 + 60_000, last=last), 6 * H)
    assert _events(alerts) == [("influxdb", "influxdb_recovered")]  # series still fresh


def test_deliver_retries_then_keeps_the_rest():
    calls = []

    def flaky(url, payload):
        calls.append(payload["n"])
        if len(calls) == 2:
            raise WebhookError("HTTP 503")

    sent, rest, error = deliver("http://x", [{"n": 1}, {"n": 2}], post=flaky, backoff_s=0)
    assert (sent, rest, error) == (2, [], None) and calls == [1, 2, 2]

    def dead(url, payload):
        raise WebhookError("refused")

    sent, rest, error = deliver("http://x", [{"n": 1}, {"n": 2}], post=dead, backoff_s=0)
    assert sent == 0 and rest == [{"n": 1}, {"n": 2}] and error == "refused"


def test_failing_webhook_keeps_alerts_and_retries_next_run(world: World, monkeypatch):
    monkeypatch.setattr(mon, "WEBHOOK_BACKOFF_S", 0.0)
    s = world.series()
    world.up_to_date(s, T0)
    down = Receiver(fail=True)
    try:
        settings = world.reload(COINPREDICT_ALERT_WEBHOOK=down.url)
        assert run_monitor(settings, FixedClock(T0)).alerts == []
        result = run_monitor(settings, FixedClock(T0 + 2 * H))
        assert len(result.alerts) == 2 and result.pending == 2 and result.delivered == 0
        assert "HTTP 503" in result.webhook_error
        assert history(settings.state_dir, "monitor")[-1]["outcome"] == "partial"
    finally:
        down.close()
    up = Receiver()
    try:
        settings = world.reload(COINPREDICT_ALERT_WEBHOOK=up.url)
        result = run_monitor(settings, FixedClock(T0 + 2 * H + 60_000))
        assert result.alerts == [] and result.delivered == 2 and result.pending == 0
        assert sorted(p["kind"] for p in up.take()) == ["data", "prediction"]
        save_predict(settings.state_dir, s, PredictState(status="failed", reason="nan"))
        result = run_monitor(settings, FixedClock(T0 + 2 * H + 120_000))
        assert [p["event"] for p in up.take()] == ["degraded"]
        assert run_monitor(settings, FixedClock(T0 + 2 * H + 180_000)).alerts == []
        assert up.take() == []
    finally:
        up.close()


def test_monitor_cli_exit_codes_and_json(world: World, receiver):
    env = {**world.env, "COINPREDICT_ALERT_WEBHOOK": receiver.url}
    out = run_cli(["monitor", "--json"], env)
    assert out.returncode == 2  # no data at all: hard_stale
    doc = json.loads(out.stdout)
    assert doc["first_run"] is True
    assert sorted(a["kind"] for a in doc["alerts"]) == ["data", "prediction"]
    assert len(receiver.take()) == 2
    assert "alert critical: BTC/USDT 1h data hard_stale" in out.stderr
    down = run_cli(["monitor"], {**env, "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9"})
    assert down.returncode == 3
    assert [p["event"] for p in receiver.take()] == ["influxdb_unreachable"]
