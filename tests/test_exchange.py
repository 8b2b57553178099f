"""The real ccxt client, through the adapter, against the in-process replay exchange."""

from __future__ import annotations

import math
import socket

import pytest

from coinpredict.base.errors import FatalExchangeError, TemporaryExchangeError
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES, parse_instant
from coinpredict.exchange.adapter import rebase_urls
from coinpredict.exchange.classify import Temporary

H1, D1, W1, M1 = (TIMEFRAMES[c] for c in ("1h", "1d", "1w", "1M"))
from helpers.replay import REPLAY_DATA_DIR, REPLAY_NOW_MS, read_csv_candles  # noqa: E402

BTC_1H = read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1h.csv")
GAP_START = parse_instant("2018-02-08T01:00:00Z", setting="t")


def flat(pages):
    return [(c.ts, c.open, c.high, c.low, c.close, c.volume) for p in pages for c in p.candles]


def assert_contiguous(pages, tf, start, end):
    assert pages[0].start_ms == start
    for a, b in zip(pages, pages[1:], strict=False):
        assert b.start_ms == tf.add(a.end_ms, 1)
    assert pages[-1].end_ms == end


def test_full_history_is_exact_and_keeps_real_gaps(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    pages = list(adapter.fetch_closed("BTC/USDT", H1, 0))
    got = flat(pages)
    assert got == BTC_1H  # bitwise-equal floats, same timestamps, nothing added
    assert all(not p.rejected for p in pages)
    ts = [c[0] for c in got]
    i = ts.index(GAP_START - HOUR_MS)
    assert ts[i + 1] - ts[i] == 34 * HOUR_MS  # 33 missing candles from 2018-02-08T01:00Z
    assert_contiguous(pages, H1, 0, BTC_1H[-1][0])
    # one open-ended first page (it starts at the exchange's first candle), then grid windows;
    # up to 3 windows fetched speculatively after 1970-01-01 are wasted (concurrency 4; how
    # many were already sent when the first page came back depends on timing)
    rest = H1.count(H1.add(pages[0].end_ms, 1), BTC_1H[-1][0])
    assert len(pages) == 1 + math.ceil(rest / 1000)
    assert len(pages) <= server.counts["klines"] <= len(pages) + 3
    assert server.counts["exchangeInfo"] == 1 and server.counts["time"] == 1


def test_from_the_first_candle_no_request_is_wasted(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    first = adapter.first_candle_ms("BTC/USDT", H1)
    server.reset_counters()
    # the first 1000 candles hold the 33 h gap: the speculative second page is trimmed
    pages = list(adapter.fetch_closed("BTC/USDT", H1, first))
    assert flat(pages) == BTC_1H
    assert_contiguous(pages, H1, first, BTC_1H[-1][0])
    assert pages[1].start_ms == H1.add(pages[0].end_ms, 1) > H1.add(first, 1000)
    assert server.counts["klines"] == len(pages)


def test_open_candle_is_never_returned(replay_server, replay_adapter):
    # the clock is in the middle of 2018-03-01T10:00Z: the replay serves that candle as open
    now = parse_instant("2018-03-01T10:30:00Z", setting="t")
    server = replay_server(now_ms=now)
    adapter = replay_adapter(server)
    since = now - 5 * DAY_MS
    got = flat(adapter.fetch_closed("BTC/USDT", H1, since))
    assert got[-1][0] == now - 30 * 60_000 - HOUR_MS  # 09:00Z, the last closed candle
    assert got == [r for r in BTC_1H if since <= r[0] <= got[-1][0]]
    # and the replay does serve the open candle when asked without a range
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/api/v3/klines?symbol=BTCUSDT&interval=1h") as r:
        assert json.load(r)[-1][0] == now - 30 * 60_000


def test_local_clock_ahead_of_exchange_is_not_trusted(replay_server, replay_adapter):
    from coinpredict.base.clock import FixedClock

    now = parse_instant("2018-03-01T10:30:00Z", setting="t")
    server = replay_server(now_ms=now)
    adapter = replay_adapter(server, clock=FixedClock(now + 3 * HOUR_MS))
    got = flat(adapter.fetch_closed("BTC/USDT", H1, now - DAY_MS))
    assert got[-1][0] == now - 30 * 60_000 - HOUR_MS


def test_twenty_percent_faults_of_every_kind_still_exact(replay_server, replay_adapter):
    # every kind, 20 % of klines requests; 4 pages in flight, so which page meets which fault
    # depends on thread timing: nothing below may depend on it.
    server = replay_server(fault_rate=0.2, seed=5, slow_s=1.5)
    adapter = replay_adapter(server, timeout_ms=1000, reject_tries=6)
    pages = list(adapter.fetch_closed("BTC/USDT", H1, 0))
    assert flat(pages) == BTC_1H
    assert all(not p.rejected for p in pages)
    assert sum(server.faults_injected.values()) >= 3
    # Bound: a page costs at most max_tries (6) requests (hard bound, enforced by the adapter).
    # At 20 % faults the expectation is 1/(1-0.2) = 1.25 requests per page; 2 per page + 4 is
    # far in the tail (this run: about 1.4).
    assert len(pages) <= server.counts["klines"] <= len(pages) * 6
    assert server.counts["klines"] <= 2 * len(pages) + 4


@pytest.mark.parametrize(
    "kind",
    [
        "5xx",
        "429",
        "418",
        "drop",
        "slow",
        "malformed",
        "empty",
        "object",
        "nan",
        "high_low",
        "negative_volume",
        "off_grid",
        "future",
    ],
)
def test_each_fault_kind_is_retried_to_the_exact_answer(replay_server, replay_adapter, kind):
    server = replay_server(slow_s=1.5)
    adapter = replay_adapter(server, timeout_ms=1000)
    since = parse_instant("2019-05-01", setting="t")
    adapter.symbols()
    server.script_faults(kind)
    pages = list(adapter.fetch_closed("BTC/USDT", H1, since))
    assert flat(pages) == [r for r in BTC_1H if r[0] >= since]
    assert server.counts["klines"] == 2
    assert len(adapter.test_sleeps) == 1


def _nobody_listening() -> str:
    with socket.socket() as s:  # a free port, closed again: connections are refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_exchange_down_is_temporary_after_bounded_tries(replay_adapter):
    adapter = replay_adapter(base_url=_nobody_listening())
    with pytest.raises(TemporaryExchangeError) as err:
        adapter.symbols()
    assert str(err.value) == "binance unreachable (load markets) after 6 tries: connection refused"
    assert "\n" not in str(err.value)
    assert len(adapter.test_sleeps) == 5
    # exponential backoff with full jitter: each delay below base * 2^(try-1)
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(adapter.test_sleeps))
    # fetch_closed loads the markets and probes the exchange clock in parallel: both give up
    fresh = replay_adapter(base_url=_nobody_listening())
    with pytest.raises(TemporaryExchangeError) as err:
        list(fresh.fetch_closed("BTC/USDT", H1, 0))
    assert str(err.value) == "binance unreachable (load markets) after 6 tries: connection refused"
    fresh.close()  # waits for the clock probe
    assert len(fresh.test_sleeps) == 10


def test_a_dead_exchange_is_tried_once_not_once_per_waiting_series(replay_adapter):
    from concurrent.futures import ThreadPoolExecutor

    adapter = replay_adapter(base_url=_nobody_listening())

    def fetch(symbol: str) -> str:
        with pytest.raises(TemporaryExchangeError) as err:
            list(adapter.fetch_closed(symbol, H1, 0))
        return str(err.value)

    with ThreadPoolExecutor(8) as pool:  # eight series start at once, as ingest's workers do
        errors = list(pool.map(fetch, ["BTC/USDT", "ETH/USDT"] * 4))
    adapter.close()
    assert set(errors) == {"binance unreachable (load markets) after 6 tries: connection refused"}
    # one markets load and one clock probe, 5 backoffs each; the other series fail at once
    assert len(adapter.test_sleeps) == 10


def test_first_fetches_load_markets_and_clock_once_in_parallel(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    from concurrent.futures import ThreadPoolExecutor

    def candles(symbol: str) -> int:
        return sum(
            len(p.candles) for p in adapter.fetch_closed(symbol, H1, REPLAY_NOW_MS - 5 * HOUR_MS)
        )

    with ThreadPoolExecutor(4) as pool:  # four series start at once, as ingest's workers do
        got = list(pool.map(candles, ["BTC/USDT", "ETH/USDT"] * 4))
    assert got == [4] * 8  # 20:00 .. 23:00; the 00:00 candle is still open
    assert server.counts["exchangeInfo"] == 1 and server.counts["time"] == 1
    assert server.counts["klines"] == 8


def test_bad_symbol_is_fatal_without_retries(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    with pytest.raises(FatalExchangeError) as err:
        list(adapter.fetch_closed("XRP/USDT", H1, 0))
    assert str(err.value) == "binance has no spot market XRP/USDT"
    assert server.counts["klines"] == 0 and adapter.test_sleeps == []
    # the exchange's own "Invalid symbol." (-1121) is fatal at once, too
    with pytest.raises(FatalExchangeError) as err:
        adapter._retry(
            "klines",
            lambda ex, _: ex.publicGetKlines({"symbol": "XRPUSDT", "interval": "1h"}),
            adapter._main,
        )
    assert str(err.value) == (
        'binance: unknown symbol (binance {"code": -1121, "msg": "Invalid symbol."})'
    )
    assert server.counts["klines"] == 1 and adapter.test_sleeps == []


@pytest.mark.parametrize("kind", ["429", "418"])
def test_retry_after_is_honoured(replay_server, replay_adapter, kind):
    server = replay_server(fault_retry_after_s=7)
    adapter = replay_adapter(server)
    server.script_faults(kind, kind)
    since = parse_instant("2019-05-30", setting="t")
    assert flat(adapter.fetch_closed("BTC/USDT", H1, since)) == [r for r in BTC_1H if r[0] >= since]
    assert adapter.test_sleeps == [7.0, 7.0]


def test_retries_exhausted_message(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server, max_tries=3)
    server.script_faults("malformed", "empty", "object")
    with pytest.raises(TemporaryExchangeError) as err:
        list(adapter.fetch_closed("BTC/USDT", H1, parse_instant("2019-05-30", setting="t")))
    assert str(err.value) == (
        "binance candles BTC/USDT 1h from 2019-05-30T00:00:00Z failed after 3 tries: "
        "malformed response (a JSON dict, not a list)"
    )
    assert server.counts["klines"] == 3


def test_time_budget_bounds_retries(replay_server, replay_adapter):
    server = replay_server(fault_retry_after_s=30)
    adapter = replay_adapter(server, time_budget_s=10)
    server.script_faults("429")
    with pytest.raises(TemporaryExchangeError) as err:
        list(adapter.fetch_closed("BTC/USDT", H1, parse_instant("2019-05-30", setting="t")))
    assert str(err.value).endswith(
        "after 1 tries (retry budget of 10 s spent): rate limited (HTTP 429)"
    )
    assert err.value.retry_after == 30.0
    assert adapter.test_sleeps == []


def test_persistent_impossible_candles_are_rejected_with_reasons(
    replay_server, replay_adapter, replay_data
):
    t0 = parse_instant("2019-05-31T00:00:00Z", setting="t")
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(6):
        lines.append(f"{t0 + i * HOUR_MS},10.0,11.0,9.0,10.5,1.0")
    lines[2] = f"{t0 + HOUR_MS},10.0,8.0,9.0,10.5,1.0"  # high < low
    lines[3] = f"{t0 + 2 * HOUR_MS},NaN,11.0,9.0,10.5,1.0"
    lines[4] = f"{t0 + 3 * HOUR_MS},10.0,11.0,9.0,10.5,-2.0"
    root = replay_data(extra={"BTC_USDT-1h.csv": "\n".join(lines) + "\n"})
    server = replay_server(root)
    adapter = replay_adapter(server)
    (page,) = adapter.fetch_closed("BTC/USDT", H1, t0)
    assert [c.ts for c in page.candles] == [t0, t0 + 4 * HOUR_MS, t0 + 5 * HOUR_MS]
    assert [(r.ts, r.reason) for r in page.rejected] == [
        (t0 + HOUR_MS, "high < low"),
        (t0 + 2 * HOUR_MS, "non-finite value"),
        (t0 + 3 * HOUR_MS, "negative volume"),
    ]
    assert server.counts["klines"] == 3  # re-asked twice (reject_tries=3), then reported


def test_injected_impossible_candles_reported_when_they_persist(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    since = parse_instant("2019-05-31T00:00:00Z", setting="t")
    server.script_faults("off_grid", "off_grid", "off_grid")
    (page,) = adapter.fetch_closed("BTC/USDT", H1, since)
    assert [r.reason for r in page.rejected] == ["off-grid timestamp"]
    assert page.rejected[0].ts == since + 12 * HOUR_MS + 1
    assert len(page.candles) == 23


def test_confirmed_empty_only_for_a_genuine_empty_list(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    start, end = GAP_START + HOUR_MS, GAP_START + 10 * HOUR_MS
    server.script_faults("empty")
    (page,) = adapter.fetch_closed("BTC/USDT", H1, start, end)
    assert page.candles == [] and page.confirmed_empty
    assert (page.start_ms, page.end_ms) == (start, end)
    assert server.counts["klines"] == 2  # the empty *body* was retried, the empty list was not


def test_until_is_respected_and_nothing_after_it_is_requested(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server, concurrency=3)
    since = parse_instant("2018-01-01", setting="t")
    until = parse_instant("2018-12-31T23:59:59Z", setting="t")
    pages = list(adapter.fetch_closed("BTC/USDT", H1, since, until))
    assert flat(pages) == [r for r in BTC_1H if since <= r[0] <= until]
    assert_contiguous(pages, H1, since, H1.floor(until))
    assert server.klines_requests_overlapping("BTCUSDT", "1h", until + 1, 2**62) == []


def test_weekly_and_monthly_alignment(replay_server, replay_adapter):
    server = replay_server(now_ms=parse_instant("2022-09-28T12:00:00Z", setting="t"))
    adapter = replay_adapter(server)
    weeks = flat(adapter.fetch_closed("BTC/USDT", W1, 0))
    assert weeks == read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1w.csv")
    assert all((ts // DAY_MS + 3) % 7 == 0 for ts, *_ in weeks)  # Mondays
    months = flat(adapter.fetch_closed("BTC/USDT", M1, 0))
    csv_months = read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1M.csv")
    assert months == csv_months[:-1]  # September 2022 is still open on 2022-09-28
    assert all(M1.is_aligned(ts) for ts, *_ in months)


def test_shifted_replay_keeps_alignment(replay_server, replay_adapter):
    now = parse_instant("2026-11-27T02:30:00Z", setting="t")
    server = replay_server(now_ms=now, shift_to_now=True)
    adapter = replay_adapter(server)
    for tf in (H1, D1, W1, M1):
        pages = list(adapter.fetch_closed("BTC/USDT", tf, now - 400 * DAY_MS))
        ts = [c[0] for c in flat(pages)]
        assert ts and all(tf.is_aligned(t) for t in ts)
        assert ts[-1] == tf.last_closed_open(now)
    # values unchanged by the shift: the 1M closes are the file's last closes
    months = flat(adapter.fetch_closed("BTC/USDT", M1, 0))
    assert [m[1:] for m in months] == [
        r[1:] for r in read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1M.csv")
    ][:-1]


def test_first_candle_and_symbols(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    assert adapter.first_candle_ms("BTC/USDT", H1) == BTC_1H[0][0]
    assert (
        adapter.first_candle_ms("ETH/USDT", D1)
        == read_csv_candles(REPLAY_DATA_DIR / "ETH_USDT-1d.csv")[0][0]
    )
    assert server.counts["klines"] == 2
    assert [(r.start_time, r.limit) for r in server.klines_log] == [(0, 1), (0, 1)]
    assert adapter.symbols() == {"BTC/USDT", "ETH/USDT"}
    assert adapter.server_time_ms() == server.clock.now_ms()
    list(adapter.fetch_closed("BTC/USDT", H1, BTC_1H[-5][0]))
    adapter.quote_volumes()
    assert server.counts["other"] == 0  # ccxt needs no endpoint beyond the five


def test_quote_volumes_is_one_request(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    volumes = adapter.quote_volumes()
    assert set(volumes) == {"BTC/USDT", "ETH/USDT"}
    assert all(v > 0 for v in volumes.values())
    assert server.counts["ticker24hr"] == 1
    assert server.counts["total"] == 2  # exchangeInfo + ticker/24hr
    assert adapter.quote_volumes("USDT") == volumes
    assert adapter.quote_volumes("BTC") == {}


def test_concurrent_pages_arrive_in_order(replay_server, replay_adapter):
    server = replay_server(latency_ms=5)
    adapter = replay_adapter(server, concurrency=4)
    pages = list(adapter.fetch_closed("BTC/USDT", H1, 0))
    assert flat(pages) == BTC_1H
    assert [p.start_ms for p in pages] == sorted(p.start_ms for p in pages)


def test_rebase_urls_keeps_paths():
    api = {
        "public": "https://api.binance.com/api/v3",
        "nested": {"x": "https://fapi.binance.com/fapi/v1"},
        "n": 3,
    }
    assert rebase_urls(api, "http://127.0.0.1:9/") == {
        "public": "http://127.0.0.1:9/api/v3",
        "nested": {"x": "http://127.0.0.1:9/fapi/v1"},
        "n": 3,
    }
    assert rebase_urls(api, "https://proxy.example/binance")["public"] == (
        "https://proxy.example/binance/api/v3"
    )


def test_retry_after_pauses_every_worker(replay_server, replay_adapter):
    server = replay_server(fault_retry_after_s=60)
    adapter = replay_adapter(server, concurrency=4)
    first = adapter.first_candle_ms("BTC/USDT", H1)
    server.script_faults("429")
    pages = list(adapter.fetch_closed("BTC/USDT", H1, first))
    assert flat(pages) == BTC_1H
    # the worker that got the 429 waited 60 s, and so did the pages that started after it: the
    # fake sleep lets no real time pass, so each later page waits out the rest of the minute
    # (minus the real time elapsed since the 429, hence the margin)
    assert 60.0 in adapter.test_sleeps
    assert sum(1 for d in adapter.test_sleeps if d >= 30) >= 2


def test_worker_instances_are_copies_with_their_own_session_and_recorder(
    replay_server, replay_adapter
):
    """Worker threads get shallow copies of the first ccxt instance (building one costs ccxt
    8-30 ms of CPU); each copy must still have its own HTTP session and its own record of the
    last answer, or one thread's error would be classified from another thread's response."""
    server = replay_server()
    adapter = replay_adapter(server)
    main = adapter._main
    a, b = adapter._borrow(), adapter._borrow()
    instances = (main, a, b)
    assert len({id(x) for x in instances}) == 3
    assert len({id(x.session) for x in instances}) == 3
    assert len({id(x._coinpredict_recorder) for x in instances}) == 3
    for rec in (x._coinpredict_recorder for x in instances):
        rec.reset()
    adapter._attempt(a, lambda ex: ex.publicGetTime())  # a request through copy a only
    assert a._coinpredict_recorder.status == 200
    assert main._coinpredict_recorder.status is None and b._coinpredict_recorder.status is None
    server.script_faults("418")
    with pytest.raises(Temporary) as got:  # b's own answer, classified from b's record
        adapter._attempt(b, lambda ex: ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h"}))
    assert got.value.reason == "banned (HTTP 418)"
    assert b._coinpredict_recorder.status == 418 and a._coinpredict_recorder.status == 200
    adapter._give_back(a)
    adapter._give_back(b)
