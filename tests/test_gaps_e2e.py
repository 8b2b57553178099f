"""detect-gaps --refill and all five timeframes, through real ccxt, the replay and influxd."""

import re
import shutil
import struct
from dataclasses import replace

import pytest
from helpers.samples import DATA, rows

from coinpredict.base.clock import FixedClock, SystemClock
from coinpredict.base.config import parse_timeframes
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES, WEEK_MS, parse_instant
from coinpredict.exchange.adapter import ExchangeAdapter
from coinpredict.ingest.gaps import load_exchange_gaps
from coinpredict.jobs.runner import run_candle_job, run_gaps_job
from coinpredict.local.state import load_ingest
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.escape import ident
from coinpredict.store.setup import init_storage

H = 3_600_000
BTC_1H = rows("BTC_USDT-1h.csv")
BTC_1D = rows("BTC_USDT-1d.csv")


def _bits(row):
    return (row[0], *(struct.pack("<d", x) for x in row[1:]))


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


def _dir(tmp_path, *names):
    d = tmp_path / "replay"
    d.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, d / name)
    return d


def test_real_outages_become_exchange_gaps_and_are_not_refetched(settings, store, tmp_path):
    clock = FixedClock(BTC_1H[-1][0] + H + 60_000)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    with ReplayServer(_dir(tmp_path, "BTC_USDT-1h.csv"), clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        run_candle_job("backfill", settings, clock=clock, exchange=adapter)
        report, found = run_gaps_job(settings, refill=False, clock=clock)
        outage = parse_instant("2018-02-08T01:00Z", setting="t")
        assert (outage, outage + 32 * H, 33) in [
            (r.first, r.last, r.count) for r in found[0].missing
        ]
        assert len(found[0].missing) == 9 and sum(r.count for r in found[0].missing) == 78
        server.reset_counters()
        report, found = run_gaps_job(settings, refill=True, clock=clock, exchange=adapter)
        assert report.exit_code == 0
        assert found[0].missing == [] and len(found[0].exchange_gaps) == 9
        assert server.klines_requests_overlapping("BTCUSDT", "1h", outage, outage + 32 * H)
        recorded = load_exchange_gaps(settings.state_dir, series)
        assert {g["first"] for g in recorded} >= {outage}
        assert all(g["confirmed_at"] == clock.now_ms() for g in recorded)
        server.reset_counters()
        report, found = run_gaps_job(settings, refill=True, clock=clock, exchange=adapter)
        assert server.counts["klines"] == 0  # nothing left to fetch: no request at all
        assert not server.klines_requests_overlapping("BTCUSDT", "1h", outage, outage + 32 * H)
        assert len(found[0].exchange_gaps) == 9
        # --recheck refetches them once more
        report, found = run_gaps_job(
            settings, refill=True, recheck=True, clock=clock, exchange=adapter
        )
        assert server.klines_requests_overlapping("BTCUSDT", "1h", outage, outage + 32 * H)
        adapter.close()


def test_deleted_ranges_first_and_last_are_refilled_bit_exactly(settings, store, tmp_path):
    s = replace(settings, timeframes=parse_timeframes("1d"))
    clock = FixedClock(BTC_1D[-1][0] + DAY_MS + 60_000)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1d"])
    with ReplayServer(_dir(tmp_path, "BTC_USDT-1d.csv"), clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        run_candle_job("backfill", s, clock=clock, exchange=adapter)
        first, last = BTC_1D[0][0], BTC_1D[-1][0]
        store.delete(series, first, first)
        store.delete(series, BTC_1D[500][0], BTC_1D[530][0])
        store.delete(series, BTC_1D[1000][0], BTC_1D[1000][0])
        store.delete(series, last, last)
        report, found = run_gaps_job(s, refill=False, clock=clock)
        assert [(r.first, r.count) for r in found[0].missing] == [
            (first, 1),
            (BTC_1D[500][0], 31),
            (BTC_1D[1000][0], 1),
            (last, 1),
        ]
        report, found = run_gaps_job(s, refill=True, clock=clock, exchange=adapter)
        adapter.close()
    assert found[0].refilled == 34 and found[0].missing == [] and found[0].exchange_gaps == []
    assert [_bits(r) for r in store.read(series).rows()] == [_bits(r) for r in BTC_1D]


def test_ingest_fills_all_five_timeframes_from_one_replay_dir(
    settings, store, influx_http, tmp_path
):
    d = _dir(tmp_path, "BTC_USDT-1m.csv", "BTC_USDT-1d.csv", "BTC_USDT-1w.csv", "BTC_USDT-1M.csv")
    # the 1h sample ends in 2019: move it by whole weeks so that it ends where the 1m sample
    # ends, keeping its real values and its alignment; then the replay shifts all to now.
    one_m_end = rows("BTC_USDT-1m.csv")[-1][0]
    k = (one_m_end - BTC_1H[-1][0]) // WEEK_MS
    lines = ["timestamp,open,high,low,close,volume"] + [
        ",".join([str(r[0] + k * WEEK_MS), *(repr(x) for x in r[1:])]) for r in BTC_1H
    ]
    (d / "BTC_USDT-1h.csv").write_text("\n".join(lines) + "\n")
    s = replace(settings, timeframes=parse_timeframes("1m,1h,1d,1w,1M"), lock_wait_ms=0)
    clock = SystemClock()
    with ReplayServer(d, shift_to_now=True, rate_limit=False) as server:
        adapter = ExchangeAdapter(
            "binance", server.url, clock=clock, sleep=lambda s: None, concurrency=8
        )
        report = run_candle_job("ingest", s, clock=clock, exchange=adapter)
        adapter.close()
    assert report.exit_code == 0, report.as_dict()
    stored = {o.series.timeframe.code: o.detail.stored for o in report.outcomes}
    assert all(n > 0 for n in stored.values()), stored
    for code in ("1w", "1M"):
        tf = TIMEFRAMES[code]
        ts = store.timestamps(Series("binance", "BTC/USDT", tf)).tolist()
        assert ts and all(tf.is_aligned(t) for t in ts)
    monday = store.timestamps(Series("binance", "BTC/USDT", TIMEFRAMES["1w"]))[0]
    assert (monday // DAY_MS + 3) % 7 == 0  # 1970-01-01 was a Thursday: Mondays are day 4 mod 7
    rps = influx_http.query(f"SHOW RETENTION POLICIES ON {ident(settings.influx_db_1m)}")
    assert [r[1] for r in rps[0]["values"] if r[0] == "rolling"] == ["4320h0m0s"]
    one_m = store.read(Series("binance", "BTC/USDT", TIMEFRAMES["1m"]))
    assert one_m.height == stored["1m"]


def test_series_start_from_since_finds_a_deleted_first_candle(settings, store, tmp_path):
    s = replace(settings, timeframes=parse_timeframes("1d"))
    clock = FixedClock(BTC_1D[-1][0] + DAY_MS + 60_000)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1d"])
    since = BTC_1D[300][0]
    expected = [r for r in BTC_1D if r[0] >= since]
    with ReplayServer(_dir(tmp_path, "BTC_USDT-1d.csv"), clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        report = run_candle_job("backfill", s, clock=clock, exchange=adapter, since_ms=since)
        assert report.exit_code == 0
        assert load_ingest(s.state_dir, series).series_start == since
        store.delete(series, since, since)
        report, found = run_gaps_job(s, refill=False, clock=clock)
        assert found[0].start == since
        assert [(r.first, r.count) for r in found[0].missing] == [(since, 1)]
        report, found = run_gaps_job(s, refill=True, clock=clock, exchange=adapter)
        adapter.close()
    assert report.exit_code == 0 and found[0].refilled == 1 and found[0].missing == []
    assert [_bits(r) for r in store.read(series).rows()] == [_bits(r) for r in expected]


def test_refill_takes_the_cycle_lock_only_after_the_scan(settings, store, tmp_path, monkeypatch):
    """The scan holds no lock: with STATE_DIR/.lock-cycle held (a cycle unit running),
    detect-gaps without anything to refill finishes, and with missing candles it scans every
    series first and only then waits for the lock (and gives up when it stays busy); once the
    lock is free the refill runs."""
    import fcntl
    import os

    from coinpredict.base.errors import LockBusyError
    from coinpredict.ingest import gaps
    from coinpredict.jobs import runner

    s = replace(settings, timeframes=parse_timeframes("1d"))
    clock = FixedClock(BTC_1D[-1][0] + DAY_MS + 60_000)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1d"])
    monkeypatch.setattr(runner, "CYCLE_LOCK_WAIT_MS", 300)
    events: list[str] = []
    real_detect = gaps.detect_series

    def spy(*args, **kwargs):
        events.append("scan")
        return real_detect(*args, **kwargs)

    monkeypatch.setattr(gaps, "detect_series", spy)
    with ReplayServer(_dir(tmp_path, "BTC_USDT-1d.csv"), clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        run_candle_job("backfill", s, clock=clock, exchange=adapter)
        fd = os.open(s.state_dir / runner.CYCLE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # what flock(1) of a cycle unit holds
        try:
            report, found = run_gaps_job(s, refill=True, clock=clock, exchange=adapter)
            assert report.exit_code == 0 and found[0].missing == []  # nothing to refill
            store.delete(series, BTC_1D[700][0], BTC_1D[702][0])
            events.clear()
            with pytest.raises(LockBusyError, match=r"\.lock-cycle"):
                run_gaps_job(s, refill=True, clock=clock, exchange=adapter)
            assert events == ["scan"]  # scanned, then waited for the lock, refetched nothing
            assert store.timestamps(series, BTC_1D[700][0], BTC_1D[702][0]).size == 0
        finally:
            os.close(fd)  # the cycle ends
        report, found = run_gaps_job(s, refill=True, clock=clock, exchange=adapter)
        adapter.close()
    assert report.exit_code == 0 and found[0].refilled == 3 and found[0].missing == []


def test_refill_takes_the_locks_once_per_series_with_missing_candles(settings, store, tmp_path):
    """The refill's locks are taken per series (a cycle waiting for them runs in between), and
    not at all for a series with nothing missing."""
    from contextlib import contextmanager

    from coinpredict.ingest.gaps import run_detect

    s = replace(settings, symbols=("BTC/USDT", "ETH/USDT"), timeframes=parse_timeframes("1d"))
    clock = FixedClock(BTC_1D[-1][0] + DAY_MS + 60_000)
    btc, eth = (Series("binance", p, TIMEFRAMES["1d"]) for p in ("BTC/USDT", "ETH/USDT"))
    held: list[str] = []

    @contextmanager
    def guard(series):
        held.append(f"enter {series.symbol}")
        yield
        held.append("exit")

    with ReplayServer(_dir(tmp_path, "BTC_USDT-1d.csv", "ETH_USDT-1d.csv"), clock=clock) as server:
        adapter = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None)
        run_candle_job("backfill", s, clock=clock, exchange=adapter)
        report, found = run_detect(
            [btc, eth], s, store, clock, exchange=adapter, refill_guard=guard
        )
        assert held == [] and report.exit_code == 0  # nothing missing: no lock taken
        store.delete(btc, BTC_1D[700][0], BTC_1D[702][0])
        store.delete(eth, BTC_1D[900][0], BTC_1D[900][0])
        report, found = run_detect(
            [btc, eth], s, store, clock, exchange=adapter, refill_guard=guard
        )
        adapter.close()
    assert held == ["enter BTC/USDT", "exit", "enter ETH/USDT", "exit"]
    assert [f.refilled for f in found] == [3, 1] and report.exit_code == 0


def test_a_1m_refill_takes_the_1m_cycle_lock_and_the_others_the_shared_one(settings, monkeypatch):
    """The 1m cycle unit has its own lock (it must not wait behind the 00:00:30 chain), so a
    refill of a 1m series waits for that one, and a refill of any other timeframe for the
    shared one: each only for the cycle that could be fetching the same series."""
    import fcntl
    import os

    from coinpredict.base.errors import LockBusyError
    from coinpredict.jobs import runner

    monkeypatch.setattr(runner, "CYCLE_LOCK_WAIT_MS", 200)
    one_m, one_h = (Series("binance", "BTC/USDT", TIMEFRAMES[tf]) for tf in ("1m", "1h"))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    for held, free, busy in ((".lock-cycle", one_m, one_h), (".lock-cycle-1m", one_h, one_m)):
        fd = os.open(settings.state_dir / held, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # that cycle unit is running
        try:
            with runner.refill_locks(settings, free):
                pass
            with pytest.raises(LockBusyError, match=re.escape(held) + r"(?!-1m)"):
                with runner.refill_locks(settings, busy):
                    pass
        finally:
            os.close(fd)
