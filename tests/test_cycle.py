"""``coinpredict cycle`` end to end: real ccxt -> replay exchange -> real influxd -> JSON files.

The cycle must publish exactly what the three commands run one after another publish, and keep
going past a failed stage (export always runs)."""

import json
import shutil
from dataclasses import replace

import pytest
from helpers.samples import DATA, rows
from helpers.world import run_cli

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import load_settings
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
from coinpredict.exchange.adapter import ExchangeAdapter
from coinpredict.jobs.cycle import run_cycle
from coinpredict.jobs.runner import run_candle_job, run_predict_job
from coinpredict.jobs.runner import run_export_job as run_export
from coinpredict.local.locks import job_locks
from coinpredict.local.runs import history
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000
H1 = TIMEFRAMES["1h"]
BTC = rows("BTC_USDT-1h.csv")
LAST = BTC[-1][0]
SYMBOLS = ("BTC/USDT", "ETH/USDT")


@pytest.fixture
def data_dir(replay_data):
    return replay_data("BTC_USDT-1h.csv", "ETH_USDT-1h.csv")


def _adapter(server, clock, **kw):
    return ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None, **kw)


def _prepared(settings, influx_http, data_dir, clock):
    """BTC + ETH 1h backfilled up to the candle before LAST (LAST still open at ``clock``)."""
    init_storage(settings, influx_http)
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        report = run_candle_job(
            "backfill", settings, clock=clock, exchange=adapter, since_ms=LAST - 3000 * H
        )
        adapter.close()
    assert report.exit_code == 0, report.as_dict()


def _cycle(settings, data_dir, clock):
    """One cycle at ``clock`` against a replay of ``data_dir`` on the same clock."""
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        try:
            return run_cycle(settings, clock=clock, exchange=adapter)
        finally:
            adapter.close()


def _published(settings) -> dict[str, dict]:
    """Every series file, without the fields that name the instant they were written."""
    out = {}
    for path in sorted(settings.export_dir.glob("*_USDT_1h.json")):
        doc = json.loads(path.read_text())
        doc.pop("generated_at")
        out[path.name] = doc
    return out


def _other(settings, tmp_path, name):
    env = {
        "COINPREDICT_INFLUX_URL": settings.influx_url,
        "COINPREDICT_INFLUX_DB": f"{settings.influx_db}{name}",
        "COINPREDICT_INFLUX_DB_1M": f"{settings.influx_db_1m}{name}",
        "COINPREDICT_STATE_DIR": str(tmp_path / name / "state"),
        "COINPREDICT_EXPORT_DIR": str(tmp_path / name / "www"),
        "COINPREDICT_SYMBOLS": ",".join(SYMBOLS),
    }
    return load_settings(environ=env)


def test_cycle_publishes_what_the_three_commands_publish(settings, influx_http, data_dir, tmp_path):
    chain, cycle = _other(settings, tmp_path, "chain"), _other(settings, tmp_path, "cycle")
    for s in (chain, cycle):
        _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))
    clock = FixedClock(LAST + H + 2 * 60_000)  # LAST closed 2 min ago
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        assert run_candle_job("ingest", chain, clock=clock, exchange=adapter).exit_code == 0
        assert run_predict_job(chain, clock=clock).exit_code == 0
        assert run_export(chain, clock).exit_code == 0
        result = run_cycle(cycle, clock=clock, exchange=adapter)
        adapter.close()

    assert result.exit_code == 0 and result.errors == {}, result.as_dict()
    assert [o.detail.stored for o in result.ingest.outcomes] == [1, 1]
    assert [o.detail.skipped for o in result.predict.outcomes] == [False, False]
    assert result.predict.notes == ["0 of 2 series skipped: no new closed candle"]
    assert sorted(result.export.written) == sorted(_published(chain))
    assert _published(cycle) == _published(chain)
    pred = _published(cycle)["prediction_BTC_USDT_1h.json"]
    assert pred["last_closed_candle"] == iso(LAST) and pred["freshness"] == "fresh"
    # each stage keeps its own run record, as when the commands run one by one
    for job in ("ingest", "predict", "export"):
        assert [r["outcome"] for r in history(cycle.state_dir, job)] == ["ok"], job
    assert set(result.as_dict()["stages"]) == {"ingest", "predict", "export"}


def test_the_cycle_exports_the_candles_predict_forecast_from_without_reading_them_again(
    settings, influx_http, data_dir, tmp_path, monkeypatch
):
    """The history files of forecast series come from predict's window (first a full read,
    then the cached window extended by the new candle), byte for byte what ``export`` reads
    from InfluxDB; the cycle sends no candle-history query for them."""
    import coinpredict.health.collect as collect

    asked: list[str] = []
    spying: list[bool] = []

    def spy(http, db, exchange, series, last, **kw):
        if spying:
            asked.extend(s.label for s in series)
        return read_candles(http, db, exchange, series, last, **kw)

    read_candles = collect.read_candles
    monkeypatch.setattr(collect, "read_candles", spy)
    chain, cycle = _other(settings, tmp_path, "chain"), _other(settings, tmp_path, "cycle")
    for s in (chain, cycle):
        _prepared(s, influx_http, data_dir, FixedClock(LAST - 2 * H + 30 * 60_000))
    for hour in (1, 0):  # LAST - 2 h, then LAST - 1 h closed 2 min ago
        clock = FixedClock(LAST - hour * H + 2 * 60_000)
        with ReplayServer(data_dir, clock=clock) as server:
            adapter = _adapter(server, clock)
            assert run_candle_job("ingest", chain, clock=clock, exchange=adapter).exit_code == 0
            assert run_predict_job(chain, clock=clock).exit_code == 0
            assert run_export(chain, clock).exit_code == 0
            spying.append(True)
            result = run_cycle(cycle, clock=clock, exchange=adapter)
            spying.clear()
            adapter.close()
        assert result.exit_code == 0 and result.errors == {}, result.as_dict()
        assert [o.detail.skipped for o in result.predict.outcomes] == [False, False]
        assert asked == [], asked
        assert _published(cycle) == _published(chain), hour
        doc = _published(cycle)["history_BTC_USDT_1h.json"]
        assert len(doc["candles"]) == cycle.history_candles
        assert doc["candles"][-1]["timestamp"] == iso(LAST - (hour + 1) * H)


def test_dead_exchange_still_predicts_and_exports_then_exits_1(settings, influx_http, data_dir):
    s = replace(settings, symbols=SYMBOLS)
    _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))
    store = CandleStore(influx_http, db=s.influx_db, db_1m=s.influx_db_1m)
    with ReplayServer(data_dir, clock=FixedClock(LAST)) as server:
        url = server.url
    clock = FixedClock(LAST + 3 * H)  # nothing listens on the replay's port any more
    dead = ExchangeAdapter("binance", url, clock=clock, sleep=lambda s: None, max_tries=2)
    result = run_cycle(s, clock=clock, exchange=dead)
    dead.close()

    assert result.exit_code == 1
    assert result.stage_code("ingest") == 1 and result.errors == {}
    assert all("unreachable" in o.error for o in result.ingest.outcomes)
    # predict forecast the candles already stored (it had never run), export published them
    assert [o.ok for o in result.predict.outcomes] == [True, True]
    assert result.export.exit_code == 0
    files = _published(s)
    assert files["history_BTC_USDT_1h.json"]["freshness"] == "stale"
    assert files["prediction_BTC_USDT_1h.json"]["last_closed_candle"] == iso(LAST - H)
    assert store.latest_open(Series("binance", "BTC/USDT", H1)) == LAST - H  # nothing lost


def test_busy_predict_lock_skips_predict_only(settings, influx_http, data_dir):
    s = replace(settings, symbols=SYMBOLS, lock_wait_ms=100)
    _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))
    clock = FixedClock(LAST + H + 60_000)
    with job_locks(s.state_dir / "locks", ["predict-1h"], wait_ms=0, job="predict"):
        result = _cycle(s, data_dir, clock)

    assert result.exit_code == 1
    assert result.predict is None
    assert result.errors["predict"].message.startswith(
        f"another predict run holds the lock {s.state_dir / 'locks' / 'predict-1h.lock'}"
    )
    assert [o.detail.stored for o in result.ingest.outcomes] == [1, 1]
    assert result.export.exit_code == 0  # history published; no forecast to serve yet
    assert json.loads((s.export_dir / "history_BTC_USDT_1h.json").read_text())["freshness"] == (
        "fresh"
    )
    assert history(s.state_dir, "predict") == []  # it did not run, so no run record


def test_unwritable_export_dir_fails_the_cycle_after_ingest_and_predict(
    settings, influx_http, data_dir
):
    s = replace(settings, symbols=SYMBOLS)
    _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))
    shutil.rmtree(s.export_dir, ignore_errors=True)  # init made it
    s.export_dir.write_text("not a directory\n")
    clock = FixedClock(LAST + H + 60_000)
    result = _cycle(s, data_dir, clock)

    assert result.exit_code == 1
    assert result.errors["export"].message == f"export directory {s.export_dir} is not a directory"
    assert result.ingest.exit_code == 0 and result.predict.exit_code == 0
    assert s.export_dir.read_text() == "not a directory\n"


def test_cli_cycle_json_and_table(settings_env, settings, influx_http, data_dir):
    s = replace(settings, symbols=SYMBOLS)
    _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))
    at = iso(LAST + H + 60_000).replace("T", " ").replace("Z", "")  # faketime's format
    with ReplayServer(data_dir, clock=FixedClock(LAST + H + 60_000)) as server:
        env = {
            **settings_env,
            "COINPREDICT_SYMBOLS": ",".join(SYMBOLS),
            "COINPREDICT_EXCHANGE_URL": server.url,
        }
        got = run_cli(["cycle", "-t", "1h", "--json"], env, faketime=at)
        assert got.returncode == 0, got.stderr
        doc = json.loads(got.stdout)
        assert doc["job"] == "cycle" and doc["outcome"] == "ok" and doc["exit_code"] == 0
        assert [doc["stages"][k]["exit_code"] for k in ("ingest", "predict", "export")] == [0, 0, 0]
        assert [x["stored"] for x in doc["stages"]["ingest"]["series"]] == [1, 1]
        table = run_cli(["cycle", "-t", "1h"], env, faketime=at)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "cycle: ok"
    cells = {c[0]: c for c in ([x.strip() for x in ln.strip("│ ").split("│")] for ln in lines)}
    # a second cycle at the same instant: nothing new, both series skipped by predict
    assert cells["ingest"][:5] == ["ingest", "ok", "2", "0", ""]
    assert cells["ingest"][6] == "0 candles stored from 0 pages"
    assert cells["predict"][:5] == ["predict", "ok", "2", "0", "2"]
    assert cells["export"][:4] == ["export", "ok", "2", "0"]
    assert cells["export"][6] == "wrote 2 files, 4 unchanged"


def test_cli_cycle_bad_exchange_is_a_config_error_before_anything(settings_env, tmp_path):
    got = run_cli(["cycle"], {**settings_env, "COINPREDICT_EXCHANGE": "nosuchexchange"})
    assert got.returncode == 2
    assert got.stderr.strip() == (
        "error: COINPREDICT_EXCHANGE: 'nosuchexchange' is not a ccxt exchange id"
    )
    assert not (tmp_path / "state" / "runs").exists()


def test_one_minute_cycle_ingests_and_exports_and_records_no_predict_run(
    settings, influx_http, tmp_path
):
    from coinpredict.base.clock import SystemClock
    from coinpredict.base.config import parse_timeframes

    d = tmp_path / "replay-1m"
    d.mkdir()
    shutil.copy(DATA / "BTC_USDT-1m.csv", d / "BTC_USDT-1m.csv")
    s = replace(settings, timeframes=parse_timeframes("1m"))
    init_storage(s, influx_http)
    clock = SystemClock()  # the replay shifts the sample to end now (1m keeps 180 days)
    with ReplayServer(d, shift_to_now=True, rate_limit=False) as server:
        adapter = _adapter(server, clock, concurrency=8)
        result = run_cycle(s, clock=clock, exchange=adapter)
        adapter.close()
    assert result.exit_code == 0, result.as_dict()
    assert result.predict is None and "predict" not in result.errors
    assert result.ingest.outcomes[0].detail.stored > 0
    assert history(s.state_dir, "predict") == []
    hist = json.loads((s.export_dir / "history_BTC_USDT_1m.json").read_text())
    assert hist["freshness"] == "fresh" and hist["candles"]


def test_top_n_never_resolved_and_exchange_dead_still_ends_with_one_error_each(settings):
    from coinpredict.base.config import parse_symbols

    s = replace(settings, symbols=parse_symbols("top:2"))
    with ReplayServer(DATA, clock=FixedClock(LAST)) as server:
        url = server.url
    clock = FixedClock(LAST + H)
    dead = ExchangeAdapter("binance", url, clock=clock, sleep=lambda s: None, max_tries=1)
    result = run_cycle(s, clock=clock, exchange=dead)
    dead.close()
    assert result.exit_code == 1
    assert "unreachable" in result.errors["ingest"].message
    never = "COINPREDICT_SYMBOLS: top:2 has not been resolved yet; run `coinpredict ingest`"
    assert result.errors["predict"].message == never
    assert result.errors["export"].message == never
    assert [(r["outcome"], r["message"]) for r in history(s.state_dir, "predict")] == [
        ("failed", never)
    ]
    assert result.as_dict()["stages"]["export"]["exit_code"] == 1  # 2 only before any stage


def test_a_crashing_predict_is_reported_and_export_still_runs(
    settings, influx_http, data_dir, monkeypatch
):
    import coinpredict.serving.predict

    s = replace(settings, symbols=SYMBOLS)
    _prepared(s, influx_http, data_dir, FixedClock(LAST + 30 * 60_000))

    def defect(*args, **kwargs):  # stands for a bug in predict
        raise RuntimeError("boom")

    monkeypatch.setattr(coinpredict.serving.predict, "predict_and_store", defect)
    clock = FixedClock(LAST + H + 60_000)
    result = _cycle(s, data_dir, clock)
    assert result.exit_code == 1
    assert result.errors["predict"].message == "predict crashed: RuntimeError: boom"
    assert result.ingest.exit_code == 0 and result.export.exit_code == 0
    assert [r["outcome"] for r in history(s.state_dir, "predict")] == ["failed"]
    assert json.loads((s.export_dir / "history_BTC_USDT_1h.json").read_text())["freshness"] == (
        "fresh"
    )


def test_one_minute_cycle_from_the_cli_imports_no_frame_or_model_library(
    settings_env, influx_http, tmp_path
):
    """The 1m cycle (every minute, the small VM's busiest job) forecasts nothing, so it never
    pays for polars, numpy or the model libraries (numpy and polars alone cost ~0.5 CPU-s to
    import, against ~0.75 CPU-s for a whole 1m cycle of one series)."""
    from helpers.importcheck import HEAVY, cli_imports

    d = tmp_path / "replay-1m"
    d.mkdir()
    shutil.copy(DATA / "BTC_USDT-1m.csv", d / "BTC_USDT-1m.csv")
    env = {**settings_env, "COINPREDICT_SYMBOLS": "BTC/USDT", "COINPREDICT_TIMEFRAMES": "1m"}
    init_storage(load_settings(environ=env), influx_http)
    with ReplayServer(d, shift_to_now=True, rate_limit=False) as server:
        code, out, imported = cli_imports(
            ["cycle", "-t", "1m", "--json"], {**env, "COINPREDICT_EXCHANGE_URL": server.url}
        )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["stages"]["ingest"]["series"][0]["stored"] > 0
    assert "ccxt" in imported  # the exchange is asked, through ccxt
    assert sorted(set(HEAVY) - {"ccxt"} & imported) == []
