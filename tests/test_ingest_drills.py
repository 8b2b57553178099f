"""Drills through the real CLI: 20% injected faults, overlapping runs, the open candle under
faketime. Kills at the named crash points are in tests/test_drills.py (bench/drills.py --short)."""

import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
from helpers.samples import DATA, rows

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.crashpoints import CRASH_AT, CRASH_LOG
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
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
            "binance",
            server.url,
            clock=clock,
            sleep=lambda s: None,
            timeout_ms=700,
            max_tries=12,
            reject_tries=12,  # 3 faulty answers in a row would quarantine a good candle
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
    # the first run stops itself after its first batch (holding the lock) until SIGCONT
    with ReplayServer(data_dir, shift_to_now=True, rate_limit=False) as server:
        env["COINPREDICT_EXCHANGE_URL"] = server.url
        log = settings.state_dir.parent / "crash.log"
        first = _cli(["ingest"], {**env, CRASH_AT: "ingest.batch_stored@1", CRASH_LOG: str(log)})
        deadline = time.monotonic() + 120
        while not (log.exists() and "stop ingest.batch_stored" in log.read_text()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        lock = settings.state_dir / "locks" / "candles-1h.lock"
        second = _cli(["ingest"], env)
        out2, err2 = second.communicate(timeout=120)
        os.kill(first.pid, signal.SIGCONT)
        out1, err1 = first.communicate(timeout=300)
        shift = server.data.get("BTCUSDT", "1h").shift_ms
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
