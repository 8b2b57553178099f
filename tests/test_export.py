"""``export`` on a real influxd: the published files, blocking, atomicity, failures."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from helpers import world as hx
from helpers.realfaults import fill, mounted_tmpfs, real_or_skip
from helpers.world import H1, M1, T0, H, M, World, run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.base.timeframes import iso
from coinpredict.health.exported import parse_iso_z
from coinpredict.health.status import run_status
from coinpredict.jobs.runner import run_export_job as run_export
from coinpredict.local.runs import history
from coinpredict.local.state import PredictState, save_predict
from coinpredict.publish.export import export_once

world = hx.world  # fixture


def _load(directory: Path, name: str) -> dict:
    return json.loads((directory / name).read_text())


def _real_now() -> int:
    """1m data must be inside the rolling retention: use the real clock for 1m scenarios."""
    return H1.floor(int(time.time() * 1000)) - 3 * H + 2 * M


def test_export_writes_every_artifact(world: World):
    now = _real_now()
    settings = world.reload(COINPREDICT_TIMEFRAMES="1m,1h")
    h1, m1 = world.series(), world.series(tf="1m")
    world.up_to_date(h1, now, horizon=4)
    world.up_to_date(m1, now)
    result = run_export(settings, FixedClock(now))
    assert result.exit_code == 0
    out = settings.export_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "history_BTC_USDT_1h.json",
        "history_BTC_USDT_1m.json",
        "manifest.json",
        "prediction_BTC_USDT_1h.json",
        "status.json",
    ]  # no 1m prediction, no temporary files left
    doc = _load(out, "prediction_BTC_USDT_1h.json")
    last = H1.last_closed_open(now)
    assert doc["schema_version"] == 1
    assert (doc["symbol"], doc["timeframe"]) == ("BTC/USDT", "1h")
    assert doc["generated_at"] == iso(now) and doc["generated_at"].endswith("Z")
    assert doc["last_closed_candle"] == iso(last)
    assert (doc["freshness"], doc["degraded"], doc["warning"]) == ("fresh", False, None)
    assert doc["model"] == {"name": "naive", "version": "v1"}
    assert doc["interval"] == 0.8
    preds = doc["predictions"]
    assert [p["timestamp"] for p in preds] == [iso(H1.add(last, i + 1)) for i in range(4)]
    assert parse_iso_z(preds[0]["timestamp"]) == H1.close_time(last)
    assert all(p["lower"] <= p["close"] <= p["upper"] for p in preds)
    assert {"lower_95", "upper_95"} <= set(preds[0])
    hist = _load(out, "history_BTC_USDT_1m.json")
    assert hist["freshness"] == "fresh" and len(hist["candles"]) == 30
    assert hist["candles"][-1]["timestamp"] == iso(M1.last_closed_open(now))
    assert set(hist["candles"][0]) == {"timestamp", "open", "high", "low", "close", "volume"}
    manifest = _load(out, "manifest.json")
    files = {a["file"]: a for a in manifest["artifacts"]}
    assert set(files) == set(names) - {"manifest.json"}
    for art in manifest["artifacts"]:
        assert {"file", "symbol", "timeframe", "generated_at", "freshness", "degraded"} <= set(art)
    assert files["prediction_BTC_USDT_1h.json"]["freshness"] == "fresh"
    assert "ops" in manifest and manifest["ops"]["health"] == "ok"
    status = _load(out, "status.json")
    assert (status["generated_at"], status["health"], status["exit_code"]) == (iso(now), "ok", 0)
    assert status["influxdb"]["reachable"] is True
    assert [(x["symbol"], x["timeframe"], x["data"]["freshness"]) for x in status["series"]] == [
        ("BTC/USDT", "1m", "fresh"),
        ("BTC/USDT", "1h", "fresh"),
    ]
    # status.json is the public view of `status --json`: the same states, codes instead of texts
    _, live = run_status(settings, FixedClock(now))
    assert status["health"] == live["health"] and status["counts"] == live["counts"]
    for pub, ops in zip(status["series"], live["series"], strict=True):
        for kind in ("data", "prediction"):
            if ops[kind] is None:
                assert pub[kind] is None
                continue
            assert {k: v for k, v in ops[kind].items() if "reason" not in k} == {
                k: v for k, v in pub[kind].items() if k not in ("text", "degraded_code")
            }
    assert "ingest" not in status["series"][0]
    run_export(settings, FixedClock(now))  # now status.json has a job to show
    jobs = _load(out, "status.json")["jobs"]
    assert jobs["export"]["last_outcome"] == "ok" and "last_message" not in jobs["export"]
    assert history(settings.state_dir, "export")[-1]["outcome"] == "ok"
    prom = settings.effective_metrics_dir / "coinpredict.prom"
    assert 'coinpredict_job_last_success_timestamp_seconds{job="export"}' in prom.read_text()


def test_stale_warns_hard_stale_blocks_degraded_serves_last_good(world: World):
    s = world.series()
    world.up_to_date(s, T0)
    out = world.settings.export_dir
    export_once(world.settings, FixedClock(T0 + 2 * H))
    doc = _load(out, "prediction_BTC_USDT_1h.json")
    assert doc["freshness"] == "stale"
    assert doc["warning"] == "stale: older than expected" and doc["reason"] == "too_old"
    assert len(doc["predictions"]) == 3
    assert _load(out, "history_BTC_USDT_1h.json")["freshness"] == "stale"
    export_once(world.settings, FixedClock(T0 + 7 * H))
    doc = _load(out, "prediction_BTC_USDT_1h.json")
    assert doc["freshness"] == "hard_stale" and doc["predictions"] == []
    assert doc["warning"] == "blocked (hard_stale): older than expected; no predictions are served"
    assert doc["reason"] == "too_old"
    assert _load(out, "history_BTC_USDT_1h.json")["candles"]  # history stays chartable
    # a failed predict run: the last good forecast stays served, flagged degraded
    save_predict(world.settings.state_dir, s, PredictState(status="failed", reason="fit blew up"))
    export_once(world.settings, FixedClock(T0))
    doc = _load(out, "prediction_BTC_USDT_1h.json")
    assert doc["degraded"] is True and doc["freshness"] == "fresh"
    assert len(doc["predictions"]) == 3 and doc["warning"].startswith("degraded: ")
    assert "fit blew up" not in json.dumps(doc)  # the ops reason stays in status --json
    manifest = _load(out, "manifest.json")
    entry = next(a for a in manifest["artifacts"] if a["file"] == "prediction_BTC_USDT_1h.json")
    assert entry["degraded"] is True


def test_no_forecast_and_no_data_are_blocked_with_a_reason(world: World):
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT")
    world.write_candles(world.series(), H1.last_closed_open(T0))
    result = export_once(world.settings, FixedClock(T0))
    assert result.exit_code == 0
    btc = _load(world.settings.export_dir, "prediction_BTC_USDT_1h.json")
    assert btc["freshness"] == "hard_stale" and btc["reason"] == "no_forecast"
    assert btc["predictions"] == [] and btc["model"] == {"name": None, "version": None}
    eth = _load(world.settings.export_dir, "history_ETH_USDT_1h.json")
    assert (
        eth["freshness"] == "hard_stale" and eth["warning"] == "hard_stale: no candles stored yet"
    )
    assert eth["reason"] == "no_data"


def test_a_failed_read_exports_what_it_can(world: World):
    now = _real_now()
    settings = world.reload(COINPREDICT_TIMEFRAMES="1m,1h")
    world.up_to_date(world.series(), now)
    world.up_to_date(world.series(tf="1m"), now)
    assert export_once(settings, FixedClock(now)).exit_code == 0
    before = (settings.export_dir / "history_BTC_USDT_1m.json").read_bytes()
    world.http.query(f'DROP DATABASE "{settings.influx_db_1m}"', write=True)
    result = export_once(settings, FixedClock(now + M), force=True)
    assert result.exit_code == 4  # partial: the 1m series could not be read
    assert result.failed == ["BTC/USDT 1m"] and result.kept == ["history_BTC_USDT_1m.json"]
    assert (settings.export_dir / "history_BTC_USDT_1m.json").read_bytes() == before
    doc = _load(settings.export_dir, "prediction_BTC_USDT_1h.json")
    assert doc["freshness"] == "fresh" and doc["generated_at"] == iso(now + M)
    status = _load(settings.export_dir, "status.json")
    m1 = next(s for s in status["series"] if s["timeframe"] == "1m")
    assert m1["data"]["freshness"] == "unknown" and m1["data"]["code"] == "read_failed"
    assert "database" not in json.dumps(status)  # the raw message stays in the ops outputs


def test_reader_never_sees_a_partial_file(world: World):
    world.reload(
        COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT,SOL/USDT", COINPREDICT_HISTORY_CANDLES="300"
    )
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        s = world.series(sym)
        world.write_candles(s, H1.last_closed_open(T0), n=300)
        world.forecast(s, H1.last_closed_open(T0), horizon=24)
    export_once(world.settings, FixedClock(T0))
    stop = threading.Event()
    runs = []

    def writer():
        clock = FixedClock(T0)
        while not stop.is_set():
            clock.advance(60_000)
            export_once(world.settings, clock)
            runs.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = 0
    try:
        for _ in range(1000):
            for path in world.settings.export_dir.iterdir():
                if path.name.startswith("."):
                    continue  # temporary files: nginx never serves dot files
                try:
                    json.loads(path.read_bytes())
                except FileNotFoundError:
                    continue
                seen += 1
    finally:
        stop.set()
        thread.join()
    assert len(runs) >= 3, "export did not run repeatedly during the polling"
    assert seen >= 1000 * 8


def test_influx_unreachable_exits_1_with_one_line_and_publishes_unknown(world: World):
    world.up_to_date(world.series(), T0)
    export_once(world.settings, FixedClock(T0))
    directory = world.settings.export_dir
    history_before = (directory / "history_BTC_USDT_1h.json").read_bytes()
    env = {**world.env, "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9"}
    out = run_cli(["export"], env)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: export incomplete: InfluxDB at http://127.0.0.1:9 is unreachable: "
        "Connection refused"
    ]
    assert (directory / "history_BTC_USDT_1h.json").read_bytes() == history_before  # kept
    pred = _load(directory, "prediction_BTC_USDT_1h.json")
    assert pred["freshness"] == "unknown" and pred["predictions"] == []  # blocked
    status = _load(directory, "status.json")
    assert status["influxdb"]["reachable"] is False
    assert [s["data"]["freshness"] for s in status["series"]] == ["unknown"]
    manifest = _load(directory, "manifest.json")
    assert manifest["ops"]["series_failed"] == ["BTC/USDT 1h"]
    assert {e["file"]: e["freshness"] for e in manifest["artifacts"]} == {
        "history_BTC_USDT_1h.json": "unknown",
        "prediction_BTC_USDT_1h.json": "unknown",
        "status.json": None,
    }
    assert parse_iso_z(manifest["generated_at"]) > T0  # written by this (real-clock) run


def test_export_dir_not_a_directory_or_full(world: World, tmp_path):
    now = int(time.time() * 1000)  # the CLI runs on the real clock
    world.up_to_date(world.series(), now, horizon=24)  # every exported file > 2 KB
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    out = run_cli(["export"], {**world.env, "COINPREDICT_EXPORT_DIR": str(blocker)})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: export directory {blocker} is not a directory"
    ]
    export_once(world.settings, FixedClock(now))
    directory = world.settings.export_dir
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    size_k = sum(-(-len(v) // 4096) * 4 for v in before.values()) + 64
    with real_or_skip(mounted_tmpfs(tmp_path / "full", size_k)) as full:
        for name, data in before.items():  # the last good export, then the disk fills up
            (full / name).write_bytes(data)
        fill(full)
        in_place = {p.name: p.read_bytes() for p in full.iterdir() if p.suffix == ".json"}
        out = run_cli(["export", "--force"], {**world.env, "COINPREDICT_EXPORT_DIR": str(full)})
        assert out.returncode == 1
        assert out.stderr.strip().splitlines() == [
            f"error: cannot write {full}/history_BTC_USDT_1h.json: "
            "No space left on device (disk full?)"
        ]
        assert {p.name: p.read_bytes() for p in full.iterdir() if p.suffix == ".json"} == in_place
        assert not [p.name for p in full.iterdir() if p.name.startswith(".")]  # no temp file


def test_fast_history_serialisation_is_byte_identical():
    from coinpredict.base.config import DEFAULT_POLICIES
    from coinpredict.base.series import Series
    from coinpredict.health.freshness import SeriesFacts, evaluate_series
    from coinpredict.publish.artifacts import dumps, history_bytes, history_doc

    s = Series("binance", "BTC/USDT", H1)
    last = H1.last_closed_open(T0)
    rows = [
        (H1.add(last, -i), 0.1 + i, 1e9 + i / 3, 1e-9 + i * 1e-12, 1 / 3 + i, float(i))
        for i in range(50, -1, -1)
    ]
    for now in (T0, T0 + 7 * H):
        h = evaluate_series(SeriesFacts(s, latest=rows[-1]), DEFAULT_POLICIES["1h"], now)
        assert history_bytes(h, rows, now) == dumps(history_doc(h, rows, now), compact=True)
        assert json.loads(history_bytes(h, rows, now))["candles"][-1]["close"] == rows[-1][4]


def test_a_narrowed_export_keeps_the_rest_of_the_manifest(world: World):
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT")
    for sym in ("BTC/USDT", "ETH/USDT"):
        world.up_to_date(world.series(sym), T0)
    export_once(world.settings, FixedClock(T0))
    out = world.settings.export_dir
    status_before = (out / "status.json").read_bytes()
    export_once(
        world.settings, FixedClock(T0 + M), [world.series("ETH/USDT")], narrowed=True, force=True
    )
    manifest = _load(out, "manifest.json")
    files = {a["file"]: a["generated_at"] for a in manifest["artifacts"]}
    assert files["prediction_BTC_USDT_1h.json"] == iso(T0)
    assert files["prediction_ETH_USDT_1h.json"] == iso(T0 + M)
    assert [(s["symbol"]) for s in manifest["series"]] == ["BTC/USDT", "ETH/USDT"]
    assert (out / "status.json").read_bytes() == status_before


def test_corrupt_forecast_or_predict_state_is_never_served(world: World):
    s = world.series()
    last = H1.last_closed_open(T0)
    world.write_candles(s, last)
    world.forecast(s, last, close=-5.0)  # impossible: a negative price
    export_once(world.settings, FixedClock(T0))
    doc = _load(world.settings.export_dir, "prediction_BTC_USDT_1h.json")
    assert doc["freshness"] == "corrupt" and doc["predictions"] == []
    assert doc["reason"] == "invalid_forecast" and doc["warning"].startswith("blocked (corrupt)")
    world.forecast(s, last)  # a valid forecast for the same origin replaces it
    save_predict(world.settings.state_dir, s, PredictState(status="ok"))
    export_once(world.settings, FixedClock(T0))
    assert len(_load(world.settings.export_dir, "prediction_BTC_USDT_1h.json")["predictions"]) == 3
    from coinpredict.local.state import predict_path

    predict_path(world.settings.state_dir, s).write_text('{"status": "ok", "rea')
    export_once(world.settings, FixedClock(T0))
    doc = _load(world.settings.export_dir, "prediction_BTC_USDT_1h.json")
    assert doc["freshness"] == "corrupt" and doc["predictions"] == []
    assert doc["reason"] == "state_unreadable"
    assert (
        str(world.settings.state_dir) not in (world.settings.export_dir / "status.json").read_text()
    )
    status = _load(world.settings.export_dir, "status.json")
    assert status["exit_code"] == 2 and status["health"] == "critical"


def test_new_candle_trigger_rewrites_only_changed_series(world: World):
    world.reload(COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT")
    for sym in ("BTC/USDT", "ETH/USDT"):
        world.up_to_date(world.series(sym), T0)
    first = export_once(world.settings, FixedClock(T0))
    assert len(first.written) == 4 and first.unchanged == []
    out = world.settings.export_dir
    btc_before = (out / "prediction_BTC_USDT_1h.json").read_bytes()
    again = export_once(world.settings, FixedClock(T0 + M))  # nothing new, still fresh
    assert again.written == [] and len(again.unchanged) == 4
    assert (out / "prediction_BTC_USDT_1h.json").read_bytes() == btc_before
    manifest = _load(out, "manifest.json")
    assert manifest["ops"]["files_unchanged"] == 4
    series_files = [a for a in manifest["artifacts"] if a.get("kind") in ("history", "prediction")]
    assert len(series_files) == 4 and {a["generated_at"] for a in series_files} == {iso(T0)}
    # a hand-edited file is rewritten even though its inputs did not change
    (out / "history_ETH_USDT_1h.json").write_text("{}")
    repaired = export_once(world.settings, FixedClock(T0 + 2 * M))
    assert repaired.written == ["history_ETH_USDT_1h.json"]
    # freshness changes (the data goes stale): every series file is rewritten
    later = export_once(world.settings, FixedClock(T0 + 2 * H))
    assert len(later.written) == 4
    assert _load(out, "prediction_BTC_USDT_1h.json")["freshness"] == "stale"


def test_a_stored_candle_missing_a_field_is_corrupt_not_a_crash(world: World):
    s = world.series()
    last = H1.last_closed_open(T0)
    world.write_candles(s, last)
    # a point written by hand (not by coinpredict) with only a close: InfluxDB answers null
    world.http.write(
        world.settings.influx_db,
        f"candles,exchange=binance,symbol=BTC/USDT,timeframe=1h close=1.5 {last - 40 * H}".encode(),
    )
    export_once(world.settings, FixedClock(T0))
    hist = _load(world.settings.export_dir, "history_BTC_USDT_1h.json")
    assert hist["freshness"] == "corrupt"
    assert hist["warning"] == "corrupt: stored candles are invalid"
    assert hist["reason"] == "invalid_data"
