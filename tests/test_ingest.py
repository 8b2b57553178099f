"""Backfill and ingest end to end: real ccxt -> replay exchange -> real influxd."""

import struct

import pytest
from helpers.samples import rows

from coinpredict.base.clock import FixedClock
from coinpredict.base.errors import LockBusyError
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.exchange.adapter import ExchangeAdapter
from coinpredict.jobs.runner import run_candle_job
from coinpredict.local.locks import job_locks
from coinpredict.local.state import load_ingest
from coinpredict.replay.server import ReplayServer
from coinpredict.store.candles import CandleStore
from coinpredict.store.setup import init_storage

H = 3_600_000


@pytest.fixture
def data_dir(replay_data):
    return replay_data("BTC_USDT-1h.csv", "ETH_USDT-1h.csv")


@pytest.fixture
def store(settings, influx_http):
    init_storage(settings, influx_http)
    return CandleStore(influx_http, db=settings.influx_db, db_1m=settings.influx_db_1m)


def _adapter(server, clock, **kw):
    return ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None, **kw)


def _job_at(clock, data_dir, job, settings, **kw):
    """Run ``job`` (backfill / ingest) at ``clock`` against a replay of ``data_dir``."""
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        try:
            return run_candle_job(job, settings, clock=clock, exchange=adapter, **kw)
        finally:
            adapter.close()


def _bits(row):
    return (row[0], *(struct.pack("<d", x) for x in row[1:]))


def _settings(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


BTC = rows("BTC_USDT-1h.csv")
LAST = BTC[-1][0]


def test_backfill_stores_exact_values_and_keeps_real_gaps(settings, store, data_dir):
    clock = FixedClock(LAST + H + 5 * 60_000)  # the last sample candle closed 5 min ago
    report = _job_at(clock, data_dir, "backfill", settings)
    assert report.exit_code == 0, report.as_dict()
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    got = store.read(series).rows()
    assert [_bits(r) for r in got] == [_bits(r) for r in BTC]
    st = load_ingest(settings.state_dir, series)
    assert st.cursor == LAST and st.series_start == BTC[0][0] and st.status == "ok"
    assert report.outcomes[0].detail.stored == len(BTC)


def test_open_candle_never_stored_then_stored_once_closed(settings, store, data_dir):
    clock = FixedClock(LAST + 30 * 60_000)  # mid-candle: the replay serves LAST as open
    since = LAST - 50 * H
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        run_candle_job("backfill", settings, clock=clock, exchange=adapter, since_ms=since)
        series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
        assert store.latest_open(series) == LAST - H
        clock.advance(31 * 60_000)  # now the candle has closed
        report = run_candle_job("ingest", settings, clock=clock, exchange=adapter)
        adapter.close()
    assert report.exit_code == 0
    assert store.latest_open(series) == LAST
    assert report.outcomes[0].detail.stored == 1
    assert store.read(series, since).height == 51


def test_dead_exchange_exits_1_and_changes_nothing(settings, store, data_dir):
    clock = FixedClock(LAST + H + 1)
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        run_candle_job("backfill", settings, clock=clock, exchange=adapter, since_ms=LAST - 10 * H)
        adapter.close()
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    before = load_ingest(settings.state_dir, series)
    # the server is gone now: nothing listens on that port any more
    dead = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None, max_tries=2)
    clock.advance(5 * H)
    report = run_candle_job("ingest", settings, clock=clock, exchange=dead)
    assert report.exit_code == 1
    assert (
        "Connection refused" in report.outcomes[0].error
        or "unreachable" in report.outcomes[0].error
    )
    after = load_ingest(settings.state_dir, series)
    assert after.cursor == before.cursor
    assert after.status == "failed" and after.last_error == report.outcomes[0].error
    assert store.latest_open(series) == LAST


def test_one_failing_series_is_a_partial_failure(settings, store, data_dir):
    clock = FixedClock(LAST + H + 1)
    s = _settings(settings, symbols=("BTC/USDT", "XRP/USDT"))
    report = _job_at(clock, data_dir, "ingest", s, since_ms=LAST - 5 * H)
    assert report.exit_code == 4
    failed = report.failed
    assert [o.series.symbol for o in failed] == ["XRP/USDT"]
    assert report.outcomes[0].ok and report.outcomes[0].detail.stored == 6


def test_impossible_candles_are_quarantined(settings, store, data_dir):
    clock = FixedClock(LAST + H + 1)
    with ReplayServer(data_dir, clock=clock, faults="impossible", fault_rate=1.0) as server:
        adapter = _adapter(server, clock, reject_tries=1)
        report = run_candle_job(
            "ingest", settings, clock=clock, exchange=adapter, since_ms=LAST - 20 * H
        )
        adapter.close()
    outcome = report.outcomes[0]
    assert outcome.detail.rejected >= 1
    quarantine = (settings.state_dir / "quarantine" / "binance" / "BTC_USDT_1h.jsonl").read_text()
    assert quarantine.count("\n") == outcome.detail.rejected
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    stored = {r[0]: r for r in store.read(series).rows()}
    source = {r[0]: r for r in BTC}
    assert all(_bits(stored[t]) == _bits(source[t]) for t in stored)  # nothing invalid stored


def test_overlapping_run_is_refused(settings, store):
    with job_locks(settings.state_dir / "locks", ["candles-1h"], wait_ms=0, job="ingest"):
        s = _settings(settings, lock_wait_ms=200)
        with pytest.raises(LockBusyError) as info:
            run_candle_job("ingest", s, clock=FixedClock(0), exchange=object())
    message = str(info.value)
    assert message.startswith(
        f"another ingest run holds the lock {settings.state_dir}/locks/candles-1h.lock (pid "
    )
    assert message.endswith("; waited 0.2s, try again later")


def test_cursor_ahead_of_data_is_repaired(settings, store, data_dir):
    from coinpredict.local.state import IngestState, save_ingest

    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    clock = FixedClock(LAST + H + 1)
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        run_candle_job("backfill", settings, clock=clock, exchange=adapter, since_ms=LAST - 10 * H)
        store.delete(series, LAST - 3 * H, LAST)  # the newest 4 candles vanish from InfluxDB
        save_ingest(settings.state_dir, series, IngestState(cursor=LAST, series_start=BTC[0][0]))
        report = run_candle_job("ingest", settings, clock=clock, exchange=adapter)
        adapter.close()
    assert report.outcomes[0].detail.stored == 4
    assert store.latest_open(series) == LAST
    assert load_ingest(settings.state_dir, series).cursor == LAST


def _last_success(settings, job):
    import re

    text = (settings.effective_metrics_dir / "coinpredict.prom").read_text()
    name = f'coinpredict_job_last_success_timestamp_seconds{{job="{job}"}} '
    m = re.search("^" + re.escape(name) + r"(\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_textfile_last_success_moves_only_after_a_successful_ingest(settings, store, data_dir):
    clock = FixedClock(LAST + H + 1)
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        run_candle_job("ingest", settings, clock=clock, exchange=adapter, since_ms=LAST - 5 * H)
        adapter.close()
    first = _last_success(settings, "ingest")
    assert first == (LAST + H + 1) / 1000
    clock.advance(2 * H)
    dead = ExchangeAdapter("binance", server.url, clock=clock, sleep=lambda s: None, max_tries=1)
    assert run_candle_job("ingest", settings, clock=clock, exchange=dead).exit_code == 1
    assert _last_success(settings, "ingest") == first


class _CountingStore(CandleStore):
    """The real store, counting its writes (how many candles, written from the exchange's text)."""

    def __init__(self, store):
        super().__init__(store.http, db=store.db, db_1m=store.db_1m)
        self.writes = []

    def write(self, series, rows, texts=None):
        rows = list(rows)
        self.writes.append((len(rows), texts is not None))
        return super().write(series, rows, texts)


def test_a_backfill_writes_five_pages_at_a_time_as_the_exchange_sent_them(
    settings, store, data_dir
):
    from coinpredict.ingest.ingest import run_ingest
    from coinpredict.store.candles import BATCH

    clock = FixedClock(LAST + H + 5 * 60_000)
    counting = _CountingStore(store)
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    with ReplayServer(data_dir, clock=clock) as server:
        adapter = _adapter(server, clock)
        try:
            report = run_ingest("backfill", [series], settings, adapter, counting, clock)
        finally:
            adapter.close()
    assert report.exit_code == 0
    pages = report.outcomes[0].detail.pages
    sizes = [n for n, _ in counting.writes]
    assert pages >= 12 and len(sizes) == -(-len(BTC) // BATCH) < pages
    assert sum(sizes) == len(BTC) and all(n >= BATCH for n in sizes[:-1])
    assert all(text for _, text in counting.writes)  # Binance's decimal text, written as it came
    assert [_bits(r) for r in store.read(series).rows()] == [_bits(r) for r in BTC]


def test_pages_fetched_before_an_exchange_failure_are_stored(settings, store):
    """A series that fails after some pages keeps what it fetched: the candles are written and
    the cursor stands at the last of them, so the next run goes on from there."""
    from coinpredict.base.candles import Candle
    from coinpredict.base.errors import TemporaryExchangeError
    from coinpredict.exchange.types import CandlePage
    from coinpredict.ingest.ingest import Window, run_ingest

    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    first = BTC[0][0]

    class Failing:
        exchange_id = "binance"

        def first_candle_ms(self, symbol, tf):
            return first

        def not_trading(self, symbol):
            return None

        def fetch_closed(self, symbol, tf, since_ms, until_ms=None):
            for k in range(3):
                chunk = [Candle(*r) for r in BTC[k * 100 : (k + 1) * 100]]
                yield CandlePage(chunk[0].ts, chunk[-1].ts, chunk)
            raise TemporaryExchangeError("klines BTC/USDT 1h: 503 (-1001), gave up after 6 tries")

    clock = FixedClock(LAST + H + 5 * 60_000)
    report = run_ingest("backfill", [series], settings, Failing(), store, clock, Window())
    assert report.exit_code == 1
    assert "-1001" in report.outcomes[0].error
    assert [_bits(r) for r in store.read(series).rows()] == [_bits(r) for r in BTC[:300]]
    assert load_ingest(settings.state_dir, series).cursor == BTC[299][0]


def test_an_hourly_run_saves_the_state_once_and_only_after_the_write(
    settings, store, data_dir, monkeypatch
):
    """The last batch's cursor goes into the run's final save: a one-page run writes each
    series' ingest state once, after InfluxDB acknowledged its candles."""
    import coinpredict.ingest.ingest as ingest_mod

    s = _settings(settings, symbols=("BTC/USDT",))
    series = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
    clock = FixedClock(LAST - H + 5 * 60_000)  # LAST - 2 h is the newest closed candle
    assert _job_at(clock, data_dir, "backfill", s, since_ms=LAST - 100 * H).exit_code == 0
    events = []
    real_save, real_write = ingest_mod.save_ingest, CandleStore.write

    def save(state_dir, ser, st):
        events.append(("save", st.cursor, st.status))
        real_save(state_dir, ser, st)

    def write(self, ser, rows, *args, **kwargs):
        events.append(("write", rows[-1][0], None))
        return real_write(self, ser, rows, *args, **kwargs)

    monkeypatch.setattr(ingest_mod, "save_ingest", save)
    monkeypatch.setattr(CandleStore, "write", write)
    clock.advance(2 * H)  # two new candles: one page
    report = _job_at(clock, data_dir, "ingest", s)
    assert report.exit_code == 0 and report.outcomes[0].detail.stored == 2
    assert events == [("write", LAST, None), ("save", LAST, "ok")]
    st = load_ingest(settings.state_dir, series)
    assert st.cursor == LAST and st.status == "ok" and st.last_new_candles == 2
