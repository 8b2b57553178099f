"""Drills through the real CLI: kill -9 mid-backfill, 20% injected faults, overlapping runs."""

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
from helpers.samples import DATA, rows

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, WEEK_MS, iso
from coinpredict.local.state import load_ingest
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000
BTC = rows("BTC_USDT-1h.csv")
SERIES = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "replay"
    d.mkdir()
    shutil.copy(DATA / "BTC_USDT-1h.csv", d / "BTC_USDT-1h.csv")
    return d


def _cli(args, env, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "coinpredict", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _expected(shift_ms, now_ms):
    tf = TIMEFRAMES["1h"]
    return [(r[0] + shift_ms, *r[1:]) for r in BTC if tf.is_closed(r[0] + shift_ms, now_ms)]


def _bits(row):
    return (row[0], *(struct.pack("<d", x) for x in row[1:]))


def _rerun_then_exact(command, env, store, state_dir, shift):
    """Run ``command`` to completion: exit 0, then every stored candle is the source's, no
    duplicates, none missing but the candle that closed during the run. -> the stored rows."""
    final = _cli([command], env)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    now = SystemClock().now_ms()
    got = store.read(SERIES).rows()
    expected = _expected(shift, now)
    assert len(got) == len(set(r[0] for r in got))  # no duplicates
    assert [_bits(r) for r in got] == [_bits(r) for r in expected[: len(got)]]
    assert len(got) >= len(expected) - 1  # at most the candle that closed during the run
    assert load_ingest(state_dir, SERIES).cursor == got[-1][0]
    return got


def _cursor_not_ahead(store, state_dir):
    cursor = load_ingest(state_dir, SERIES).cursor
    latest = store.latest_open(SERIES)
    assert cursor is None or (latest is not None and cursor <= latest)


def test_kill_9_during_backfill_then_rerun_is_exact(settings, settings_env, influx_http, data_dir):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    env = {**settings_env, "COINPREDICT_SYMBOLS": "BTC/USDT", "COINPREDICT_TIMEFRAMES": "1h"}
    rng = random.Random(7)
    state_file = settings.state_dir / "ingest" / "binance" / "BTC_USDT_1h.json"
    with ReplayServer(data_dir, shift_to_now=True, latency_ms=300, rate_limit=False) as server:
        env["COINPREDICT_EXCHANGE_URL"] = server.url
        shift = server.data.week_shift * WEEK_MS
        kills = 0
        for _ in range(3):
            before = load_ingest(settings.state_dir, SERIES).cursor
            proc = _cli(["backfill"], env)
            deadline = time.monotonic() + 60
            # kill at a random moment after the run has stored at least one more page
            while proc.poll() is None and time.monotonic() < deadline:
                if state_file.exists() and load_ingest(settings.state_dir, SERIES).cursor != before:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            _cursor_not_ahead(store, settings.state_dir)
        _rerun_then_exact("backfill", env, store, settings.state_dir, shift)
    assert kills >= 1


def test_20_percent_faults_of_every_kind_still_exact(settings, influx_http, data_dir):
    from coinpredict.exchange.adapter import ExchangeAdapter
    from coinpredict.jobs.runner import run_candle_job

    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    last = BTC[-1][0]
    clock = FixedClock(last + H + 1)
    with ReplayServer(
        data_dir, clock=clock, fault_rate=0.2, seed=3, slow_s=1.5, rate_limit=False
    ) as server:
        adapter = ExchangeAdapter(
            "binance", server.url, clock=clock, sleep=lambda s: None, timeout_ms=700, max_tries=12
        )
        report = run_candle_job("backfill", settings, clock=clock, exchange=adapter)
        adapter.close()
        requests = server.counts["klines"]
        injected = sum(server.faults_injected.values())
    assert report.exit_code == 0, report.as_dict()
    got = store.read(SERIES).rows()
    assert [_bits(r) for r in got] == [_bits(r) for r in BTC]
    pages = -(-TIMEFRAMES["1h"].count(BTC[0][0], last) // 1000)
    assert injected > 0
    # each page needs 1 good answer; at 20% faults the expected tries per page are 1.25
    assert requests <= 2 * pages + 10, (requests, pages, injected)


def test_two_overlapping_ingest_runs(settings, settings_env, influx_http, data_dir):
    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    env = {
        **settings_env,
        "COINPREDICT_SYMBOLS": "BTC/USDT",
        "COINPREDICT_TIMEFRAMES": "1h",
        "COINPREDICT_LOCK_WAIT": "0",
    }
    # slow pages keep the first run busy (holding the lock) while the second one starts
    with ReplayServer(data_dir, shift_to_now=True, latency_ms=700, rate_limit=False) as server:
        env["COINPREDICT_EXCHANGE_URL"] = server.url
        first = _cli(["ingest"], env)
        # wait until the first run holds the lock, then start the second
        lock = settings.state_dir / "locks" / "candles-1h.lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().startswith("pid")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = _cli(["ingest"], env)
        out2, err2 = second.communicate(timeout=120)
        out1, err1 = first.communicate(timeout=300)
        shift = server.data.week_shift * WEEK_MS
        now = SystemClock().now_ms()
    assert first.returncode == 0, err1
    assert second.returncode == 1
    assert err2.strip().startswith(f"error: another ingest run holds the lock {lock} (pid ")
    got = store.read(SERIES).rows()
    expected = _expected(shift, now)
    assert [_bits(r) for r in got] == [_bits(r) for r in expected[: len(got)]]
    assert len(got) >= len(expected) - 1


def test_under_faketime_mid_candle_the_open_candle_waits_until_closed(
    settings, settings_env, influx_http, data_dir
):
    """The real CLI under faketime (libfaketime), the replay's clock set to the same instant."""
    from helpers.world import run_cli

    from coinpredict.base.timeframes import iso

    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    last = BTC[-1][0]
    mid = last + 30 * 60_000  # the replay serves `last` as the still-open candle
    clock = FixedClock(mid)

    def at(ms):
        return iso(ms).replace("T", " ").replace("Z", "")

    with ReplayServer(data_dir, clock=clock) as server:
        env = {
            **settings_env,
            "COINPREDICT_EXCHANGE_URL": server.url,
            "TZ": "UTC",
            "COINPREDICT_SYMBOLS": "BTC/USDT",
            "COINPREDICT_TIMEFRAMES": "1h",
        }
        out = run_cli(["backfill", "--since", iso(last - 10 * H)], env, faketime=at(mid))
        assert out.returncode == 0, out.stderr
        assert store.latest_open(SERIES) == last - H  # the open candle was not stored
        from coinpredict.local.runs import history

        started = history(settings.state_dir, "backfill")[-1]["start"]
        assert mid <= started < mid + 60_000  # the CLI really ran at the faked instant
        clock.advance(31 * 60_000)  # 1 minute after it closed
        out = run_cli(["ingest", "--json"], env, faketime=at(clock.now_ms()))
        assert out.returncode == 0, out.stderr
    assert store.latest_open(SERIES) == last
    stored = store.read(SERIES, last - 10 * H).rows()
    assert [_bits(r) for r in stored] == [_bits(r) for r in BTC[-11:]]  # once, exact


def test_kill_9_during_cycle_then_rerun_is_exact(settings, settings_env, influx_http, data_dir):
    """kill -9 at random instants of `coinpredict cycle` (ingest backfilling, predict, export):
    candles exact, every exported file parses, the cached model window equals InfluxDB."""
    import json

    from coinpredict.serving.windows import _load, window_path

    init_storage(settings, influx_http)
    store = CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)
    env = {**settings_env, "COINPREDICT_SYMBOLS": "BTC/USDT", "COINPREDICT_TIMEFRAMES": "1h"}
    rng = random.Random(11)
    with ReplayServer(data_dir, shift_to_now=True, latency_ms=100, rate_limit=False) as server:
        env["COINPREDICT_EXCHANGE_URL"] = server.url
        shift = server.data.week_shift * WEEK_MS
        kills = 0
        for delay in (rng.uniform(0.8, 2.5) for _ in range(3)):
            proc = _cli(["cycle"], env)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            _cursor_not_ahead(store, settings.state_dir)
        got = _rerun_then_exact("cycle", env, store, settings.state_dir, shift)
    assert kills >= 1
    for path in settings.export_dir.glob("*.json"):
        json.loads(path.read_text())  # no torn file
    window, _ = _load(window_path(settings.state_dir, SERIES))
    ts = window["timestamp"]
    assert window.equals(store.read(SERIES, int(ts[0]), int(ts[-1])))
    pred = json.loads((settings.export_dir / "prediction_BTC_USDT_1h.json").read_text())
    assert pred["last_closed_candle"] == iso(got[-1][0])  # forecast from the newest candle
