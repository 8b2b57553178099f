"""The replay exchange over plain HTTP: Binance semantics, clock, shift, rate limit, faults, CLI."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers.replay import REPLAY_DATA_DIR, REPLAY_NOW_MS

from coinpredict.base.clock import FixedClock
from coinpredict.base.timeframes import DAY_MS, HOUR_MS, TIMEFRAMES, parse_instant
from coinpredict.replay import ReplayDataError, ReplayServer

H1 = TIMEFRAMES["1h"]
CSV_ROWS = [
    line.split(",") for line in (REPLAY_DATA_DIR / "BTC_USDT-1h.csv").read_text().splitlines()[1:]
]


def get(server, path, timeout=5):
    """(status, headers, body bytes) of a GET."""
    try:
        with urllib.request.urlopen(server.url + path, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def klines(server, query):
    status, _, body = get(server, "/api/v3/klines?" + query)
    assert status == 200, body
    return json.loads(body)


def test_klines_rows_are_binance_rows_with_the_csv_text(replay_server):
    server = replay_server()
    start = int(CSV_ROWS[100][0])
    rows = klines(server, f"symbol=BTCUSDT&interval=1h&startTime={start}&limit=3")
    assert [r[0] for r in rows] == [int(c[0]) for c in CSV_ROWS[100:103]]
    for row, csv in zip(rows, CSV_ROWS[100:103], strict=True):
        assert len(row) == 12
        assert row[1:6] == csv[1:6]  # prices and volume are the CSV's strings, unchanged
        assert row[6] == row[0] + HOUR_MS - 1
        assert isinstance(row[8], int) and row[11] == "0"


def test_klines_range_and_limit_semantics(replay_server):
    server = replay_server()
    ts = [int(c[0]) for c in CSV_ROWS]
    assert len(klines(server, "symbol=BTCUSDT&interval=1h")) == 500  # default limit
    latest = klines(server, "symbol=BTCUSDT&interval=1h&limit=1000")
    assert [r[0] for r in latest] == ts[-1000:]  # no startTime: the latest candles
    end = ts[5000]
    before = klines(server, f"symbol=BTCUSDT&interval=1h&endTime={end}&limit=7")
    assert [r[0] for r in before] == ts[4994:5001]
    window = klines(server, f"symbol=BTCUSDT&interval=1h&startTime={ts[10]}&endTime={ts[14]}")
    assert [r[0] for r in window] == ts[10:15]
    assert klines(server, "symbol=BTCUSDT&interval=1h&startTime=0&limit=1")[0][0] == ts[0]
    assert klines(server, "symbol=BTCUSDT&interval=1w&startTime=0&limit=1")[0][0] % 1 == 0
    assert klines(server, "symbol=ETHUSDT&interval=1w") == []  # no file: no candles


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("symbol=XRPUSDT&interval=1h", 400, {"code": -1121, "msg": "Invalid symbol."}),
        ("symbol=BTCUSDT&interval=2h", 400, {"code": -1120, "msg": "Invalid interval."}),
        (
            "symbol=BTCUSDT&interval=1h&limit=1001",
            400,
            {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."},
        ),
        (
            "interval=1h",
            400,
            {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            },
        ),
    ],
)
def test_klines_errors(replay_server, query, status, body):
    server = replay_server()
    got_status, _, got = get(server, "/api/v3/klines?" + query)
    assert (got_status, json.loads(got)) == (status, body)


def test_never_a_candle_before_it_opens_and_the_open_one_is_served(replay_server):
    t = int(CSV_ROWS[2000][0])
    clock = FixedClock(t - 1)
    server = replay_server(clock=clock)
    q = "symbol=BTCUSDT&interval=1h&limit=2"
    assert klines(server, q)[-1][0] == int(CSV_ROWS[1999][0])  # t has not opened yet
    clock.ms = t
    assert klines(server, q)[-1][0] == t  # opened this very millisecond: served, still open
    assert klines(server, f"{q}&startTime={t + HOUR_MS}") == []
    clock.ms = t + HOUR_MS - 1
    assert klines(server, q)[-1][0] == t


def test_time_ping_exchange_info_and_ccxt_markets(replay_server):
    import ccxt

    server = replay_server()
    assert json.loads(get(server, "/api/v3/time")[2]) == {"serverTime": REPLAY_NOW_MS}
    assert json.loads(get(server, "/api/v3/ping")[2]) == {}
    info = json.loads(get(server, "/api/v3/exchangeInfo")[2])
    assert [
        (s["symbol"], s["status"], s["baseAsset"], s["quoteAsset"]) for s in info["symbols"]
    ] == [("BTCUSDT", "TRADING", "BTC", "USDT"), ("ETHUSDT", "TRADING", "ETH", "USDT")]
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
    ex.urls["api"] = {k: server.url + "/" + v.split("/", 3)[3] for k, v in ex.urls["api"].items()}
    markets = ex.load_markets()
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT"]
    assert markets["BTC/USDT"]["spot"] and markets["BTC/USDT"]["active"]
    assert ex.fetch_time() == REPLAY_NOW_MS
    assert get(server, "/api/v3/nope")[0] == 404


def test_ticker_24hr_all_one_and_list(replay_server):
    server = replay_server()
    everything = json.loads(get(server, "/api/v3/ticker/24hr")[2])
    assert [t["symbol"] for t in everything] == ["BTCUSDT", "ETHUSDT"]
    one = json.loads(get(server, "/api/v3/ticker/24hr?symbol=BTCUSDT")[2])
    assert one == everything[0]
    # the last 24 h of 1 h candles up to now
    day = [c for c in CSV_ROWS if REPLAY_NOW_MS - DAY_MS < int(c[0]) <= REPLAY_NOW_MS]
    assert float(one["quoteVolume"]) == pytest.approx(
        sum(float(c[4]) * float(c[5]) for c in day), rel=1e-9
    )
    assert one["lastPrice"] == f"{float(day[-1][4]):.8f}"
    listed = json.loads(get(server, '/api/v3/ticker/24hr?symbols=["ETHUSDT","BTCUSDT"]')[2])
    assert [t["symbol"] for t in listed] == ["ETHUSDT", "BTCUSDT"]
    status, _, body = get(server, '/api/v3/ticker/24hr?symbols=["XRPUSDT"]')
    assert (status, json.loads(body)["code"]) == (400, -1121)


def test_shift_to_now_rule_keeps_alignment(replay_server):
    now = parse_instant("2026-11-27T02:30:00Z", setting="t")  # a Friday
    server = replay_server(now_ms=now, shift_to_now=True)
    week = 7 * DAY_MS
    for series in server.data.series.values():
        tf = series.tf
        visible = series.ts[: series.visible_end(now)]
        assert visible[-1] == tf.floor(now), series  # the newest served candle is the open one
        assert all(tf.is_aligned(t) for t in visible)
        assert series.ts[-1] - tf.floor(now) < week  # less than a week of it is hidden
        short = series.ts[-1] - series.ts[0] < 2 * week and tf.code != "1w"
        if short:  # a short sample moves by whole days: at most a day of it is hidden
            assert series.shift_ms % DAY_MS == 0 and series.shift_ms > 0
            assert series.ts[-1] - tf.floor(now) < DAY_MS
            assert len(visible) > len(series.ts) // 2
        elif not tf.is_monthly:
            assert series.shift_ms % week == 0 and series.shift_ms > 0
    # files that end together are shifted together
    shifts = {(s.market_id, s.tf.code): s.shift_ms for s in server.data.series.values()}
    assert shifts[("BTCUSDT", "1h")] == shifts[("ETHUSDT", "1h")]
    k = shifts[("BTCUSDT", "1h")] // week
    # the same instant in every fixed-step file: 1h candles still aggregate to the 1d candle
    hourly = server.data.get("BTCUSDT", "1h")
    daily = ReplayServer(REPLAY_DATA_DIR).data.get("BTCUSDT", "1d")  # unshifted
    day = parse_instant("2018-03-01", setting="t")
    by_ts = dict(zip(hourly.ts, hourly.rows, strict=True))
    hours = [by_ts[t + k * week] for t in range(day, day + DAY_MS, HOUR_MS)]
    d = daily.rows[daily.ts.index(day)]
    assert (hours[0][0], hours[-1][3]) == (d[0], d[3])
    assert max(float(x[1]) for x in hours) == float(d[1])


def test_weight_limit_429_then_418_ban(replay_server):
    server = replay_server(weight_limit=10, ban_after=3, ban_seconds=60)
    q = "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1"
    statuses = [get(server, q)[0] for _ in range(5)]  # 5 x weight 2 = the whole budget
    assert statuses == [200] * 5
    status, headers, body = get(server, q)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert json.loads(body)["code"] == -1003
    assert [get(server, q)[0] for _ in range(3)] == [429, 429, 418]  # did not back off: banned
    status, headers, _ = get(server, "/api/v3/time")
    assert status == 418 and 1 <= int(headers["Retry-After"]) <= 60


@pytest.mark.parametrize("kind", ["5xx", "429", "418"])
def test_http_faults(replay_server, kind):
    server = replay_server(fault_retry_after_s=3)
    server.script_faults(kind)
    status, headers, _ = get(server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
    if kind == "5xx":
        assert status in (500, 502, 503, 504)
    else:
        assert status == int(kind) and headers["Retry-After"] == "3"
    assert server.klines_log[-1].fault == kind
    assert get(server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")[0] == 200


def test_drop_and_slow_faults(replay_server):
    server = replay_server(slow_s=1.0)
    server.script_faults("drop", "slow")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)
    conn.request("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)
    conn.request("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("malformed", lambda b: pytest.raises(ValueError, json.loads, b)),
        ("empty", lambda b: b == b""),
        ("object", lambda b: isinstance(json.loads(b), dict)),
    ],
)
def test_body_faults(replay_server, kind, check):
    server = replay_server()
    server.script_faults(kind)
    status, _, body = get(server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=5")
    assert status == 200
    assert check(body)


def test_impossible_candle_faults(replay_server):
    server = replay_server()
    q = f"symbol=BTCUSDT&interval=1h&startTime={CSV_ROWS[0][0]}&limit=5"
    clean = klines(server, q)
    server.script_faults("nan", "high_low", "negative_volume", "off_grid", "future")
    nan, high_low, negative, off_grid, future = (klines(server, q) for _ in range(5))
    assert nan[2][1] == "NaN"
    assert float(high_low[2][2]) < float(high_low[2][3])
    assert float(negative[2][5]) < 0
    assert off_grid[2][0] == clean[2][0] + 1
    assert future[:5] == clean and future[5][0] == H1.floor(REPLAY_NOW_MS) + 2 * HOUR_MS


def test_seeded_fault_rate_is_reproducible(replay_server):
    def run(seed):
        server = replay_server(fault_rate=0.5, faults="body", seed=seed)
        for _ in range(20):
            get(server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
        return [r.fault for r in server.klines_log]

    a, b = run(7), run(7)
    assert a == b and {"malformed", "empty", "object"} & set(a) and None in a
    assert run(8) != a


def test_latency_and_request_log(replay_server):
    server = replay_server(latency_ms=80)
    t = time.monotonic()
    get(server, "/api/v3/ping")
    assert time.monotonic() - t >= 0.08
    klines(server, "symbol=BTCUSDT&interval=1h&startTime=1000&endTime=5000&limit=2")
    assert server.counts["ping"] == 1 and server.counts["klines"] == 1
    assert server.klines_requests_overlapping("BTCUSDT", "1h", 4000, 9000)
    assert not server.klines_requests_overlapping("BTCUSDT", "1h", 5001, 9000)


def test_bad_data_directory(tmp_path):
    with pytest.raises(ReplayDataError, match="no candle files"):
        ReplayServer(tmp_path)
    (tmp_path / "BTC_USDT-1h.csv").write_text("ts,o\n1,2\n")
    with pytest.raises(ReplayDataError, match="header"):
        ReplayServer(tmp_path)


def test_the_text_of_every_value_is_kept_and_bad_lines_are_named(tmp_path):
    """CRLF endings, blank lines and a last line without a newline: each candle's values are
    the file's text; a bad line is named by its line number in the file."""
    from coinpredict.replay.data import ReplayData

    body = (
        "timestamp,open,high,low,close,volume\r\n0,1.50,2,1,1.5000,7\r\n\r\n60000,1e2,3,0.5,2,0.0"
    )
    (tmp_path / "BTC_USDT-1m.csv").write_text(body, newline="")
    s = ReplayData.load(tmp_path).get("BTCUSDT", "1m")
    assert list(s.ts) == [0, 60000]
    assert list(s.rows) == [("1.50", "2", "1", "1.5000", "7"), ("1e2", "3", "0.5", "2", "0.0")]
    assert s.rows[-1] == s.rows[1] and s.rows[0:1] == [s.rows[0]] and len(s.rows) == 2
    for bad, why in (
        ("60000,1,2,3,4\n", ":5: expected 6 columns"),
        ("6e4,1,2,3,4,5\n", ":5: timestamp is not an integer"),
        ("0,1,2,3,4,5\n", ":5: timestamps must be strictly ascending"),
    ):
        (tmp_path / "BTC_USDT-1m.csv").write_text(body + "\n" + bad, newline="")
        with pytest.raises(ReplayDataError, match=why):
            ReplayData.load(tmp_path)


def test_cli_serve_prints_url_and_stops_on_sigterm():
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from coinpredict.cli.replay import replay_app; replay_app()",
            "serve",
            "--data",
            str(REPLAY_DATA_DIR),
            "--now",
            "2019-06-01T00:30:00Z",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/api/v3/time", timeout=5) as r:
            assert json.load(r) == {"serverTime": REPLAY_NOW_MS}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(url + "/api/v3/ping", timeout=2)


def test_cli_rejects_bad_options():
    from typer.testing import CliRunner

    from coinpredict.cli.replay import replay_app

    result = CliRunner().invoke(
        replay_app, ["serve", "--data", str(REPLAY_DATA_DIR), "--faults", "5xx,bogus"]
    )
    assert result.exit_code != 0
    assert "unknown fault kind 'bogus'" in str(result.exception)


BINANCE_FILTERS = [
    "PRICE_FILTER",
    "LOT_SIZE",
    "ICEBERG_PARTS",
    "MARKET_LOT_SIZE",
    "TRAILING_DELTA",
    "PERCENT_PRICE_BY_SIDE",
    "NOTIONAL",
    "MAX_NUM_ORDERS",
    "MAX_NUM_ALGO_ORDERS",
]


def test_a_full_size_market_list_like_binance(replay_server):
    import ccxt

    server = replay_server(markets=400)
    info = json.loads(get(server, "/api/v3/exchangeInfo")[2])
    symbols = info["symbols"]
    assert len(symbols) == len({s["symbol"] for s in symbols}) == 400
    assert [(s["symbol"], s["status"]) for s in symbols[:2]] == [
        ("BTCUSDT", "TRADING"),
        ("ETHUSDT", "TRADING"),
    ]
    statuses = [s["status"] for s in symbols]
    assert {"TRADING", "BREAK", "HALT"} == set(statuses) and statuses.count("BREAK") > 100
    assert all([f["filterType"] for f in s["filters"]] == BINANCE_FILTERS for s in symbols)
    assert {s["quoteAsset"] for s in symbols} >= {"USDT", "BTC", "USDC", "FDUSD", "BNB"}
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    # a ticker for every listed symbol; those with candles have the largest volumes
    tickers = json.loads(get(server, "/api/v3/ticker/24hr")[2])
    assert sorted(t["symbol"] for t in tickers) == sorted(s["symbol"] for s in symbols)
    ranked = sorted(tickers, key=lambda t: -float(t["quoteVolume"]))
    assert [t["symbol"] for t in ranked[:2]] == ["BTCUSDT", "ETHUSDT"]
    assert all(float(t["quoteVolume"]) > 0 for t in tickers)
    # a listed symbol without data has no candles; an unlisted one is an invalid symbol
    halted = next(s["symbol"] for s in symbols if s["status"] == "HALT")
    assert klines(server, f"symbol={halted}&interval=1h") == []
    assert get(server, "/api/v3/klines?symbol=NOPEUSDT&interval=1h")[0] == 400
    # ccxt reads it: active = TRADING
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
    ex.urls["api"] = {k: server.url + "/" + v.split("/", 3)[3] for k, v in ex.urls["api"].items()}
    markets = ex.load_markets()
    assert len(markets) == 400
    assert sum(m["active"] for m in markets.values()) == statuses.count("TRADING")


def test_weights_and_the_used_weight_header(replay_server):
    server = replay_server(markets=50)
    used = []
    for path in (
        "/api/v3/exchangeInfo",  # 20
        "/api/v3/ticker/24hr",  # 80 (all symbols)
        "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1000",  # 2
        "/api/v3/ticker/24hr?symbol=BTCUSDT",  # 2
        "/api/v3/time",  # 1
    ):
        status, headers, _ = get(server, path)
        assert status == 200
        used.append(int(headers["X-MBX-USED-WEIGHT-1m"]))
    assert used == [20, 100, 102, 104, 105]


def test_status_changes_and_delisting(replay_server):
    server = replay_server()
    server.set_status("ETHUSDT", "BREAK")
    info = json.loads(get(server, "/api/v3/exchangeInfo")[2])
    assert [(s["symbol"], s["status"]) for s in info["symbols"]] == [
        ("BTCUSDT", "TRADING"),
        ("ETHUSDT", "BREAK"),
    ]
    assert klines(server, "symbol=ETHUSDT&interval=1h&limit=1") != []  # history still served
    server.set_status("ETHUSDT", None)
    info = json.loads(get(server, "/api/v3/exchangeInfo")[2])
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"]
    status, _, body = get(server, "/api/v3/klines?symbol=ETHUSDT&interval=1h")
    assert (status, json.loads(body)) == (400, {"code": -1121, "msg": "Invalid symbol."})


def test_5xx_json_fault_has_a_binance_body(replay_server):
    server = replay_server()
    server.script_faults("5xx_json")
    status, _, body = get(server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=1")
    assert status in (500, 502, 503, 504)
    assert json.loads(body)["code"] in (-1000, -1001, -1006, -1007, -1008)
