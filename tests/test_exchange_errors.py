"""Binance's error table at the adapter edge, through real ccxt against the replay: every code and
body shape the replay can answer with is either retried to the exact answer or fatal at once."""

from __future__ import annotations

import pytest
from helpers.replay import REPLAY_DATA_DIR, read_csv_candles

from coinpredict.base.errors import FatalExchangeError, TemporaryExchangeError
from coinpredict.base.timeframes import TIMEFRAMES, parse_instant
from coinpredict.replay.faults import BINANCE_MESSAGES, Answer

H1 = TIMEFRAMES["1h"]
BTC_1H = read_csv_candles(REPLAY_DATA_DIR / "BTC_USDT-1h.csv")
SINCE = parse_instant("2019-05-01", setting="t")
EXPECTED = [r for r in BTC_1H if r[0] >= SINCE]

TEMPORARY_CODES = (-1000, -1001, -1003, -1006, -1007, -1008)
FATAL_CODES = sorted(c for c in BINANCE_MESSAGES if -1130 <= c <= -1100)


def _html(status: int) -> Answer:
    return Answer(status, f"<html><body>{status}</body></html>".encode(), "text/html")


# (label, answer): each is retried, and the next answer (a good one) is what the adapter returns
TEMPORARY = [
    *[
        (f"{code} HTTP {st}", Answer.binance(st, code))
        for code in TEMPORARY_CODES
        for st in (400, 500, 503)
    ],
    *[(f"HTML {st}", _html(st)) for st in (500, 502, 503, 504)],
    ("empty 503", Answer(503, b"", "text/plain")),
    ("text 500", Answer(500, b"Internal Server Error", "text/plain")),
    ("JSON without code 502", Answer(502, b'{"msg": "bad gateway"}')),
    ("JSON with a fatal code on a 5xx", Answer.binance(500, -1121)),
    ("unknown code on a 5xx", Answer.binance(503, -9999)),
    ("OperationFailed without a known code (-1010)", Answer.binance(400, -1010)),
]

FATAL = [(f"{code}", Answer.binance(400, code)) for code in FATAL_CODES]


def _fetch(adapter):
    return [
        (c.ts, c.open, c.high, c.low, c.close, c.volume)
        for p in adapter.fetch_closed("BTC/USDT", H1, SINCE)
        for c in p.candles
    ]


@pytest.mark.parametrize(("label", "answer"), TEMPORARY, ids=[t[0] for t in TEMPORARY])
def test_temporary_answers_are_retried_to_the_exact_answer(
    replay_server, replay_adapter, label, answer
):
    server = replay_server()
    adapter = replay_adapter(server)
    adapter.symbols()
    server.script_faults(answer)
    assert _fetch(adapter) == EXPECTED
    assert server.counts["klines"] == 2
    assert len(adapter.test_sleeps) == 1


@pytest.mark.parametrize(("label", "answer"), FATAL, ids=[f[0] for f in FATAL])
def test_bad_request_codes_are_fatal_at_once(replay_server, replay_adapter, label, answer):
    server = replay_server()
    adapter = replay_adapter(server)
    adapter.symbols()
    server.script_faults(answer)
    with pytest.raises(FatalExchangeError) as err:
        _fetch(adapter)
    what = "unknown symbol" if label == "-1121" else "bad request"
    assert str(err.value).startswith(f"binance: {what} (")
    assert f'"code": {label}' in str(err.value)
    assert server.counts["klines"] == 1 and adapter.test_sleeps == []


def test_rate_limit_code_honours_retry_after(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server)
    adapter.symbols()
    server.script_faults(Answer.binance(429, -1003, retry_after=9))
    assert _fetch(adapter) == EXPECTED
    assert adapter.test_sleeps == [9.0]


def test_operation_failed_without_a_known_code_is_bounded(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server, max_tries=4)
    adapter.symbols()
    server.script_faults(*[Answer.binance(400, -1010)] * 4)
    with pytest.raises(TemporaryExchangeError) as err:
        _fetch(adapter)
    assert str(err.value) == (
        "binance candles BTC/USDT 1h from 2019-05-01T00:00:00Z failed after 4 tries: "
        'HTTP 400 Bad Request, operation failed (binance {"code": -1010, "msg": '
        '"ERROR_MSG_RECEIVED."})'
    )
    assert server.counts["klines"] == 4 and len(adapter.test_sleeps) == 3


def test_5xx_with_a_binance_body_names_the_code(replay_server, replay_adapter):
    server = replay_server()
    adapter = replay_adapter(server, max_tries=1)
    adapter.symbols()
    server.script_faults(Answer.binance(500, -1001))
    with pytest.raises(TemporaryExchangeError) as err:
        _fetch(adapter)
    assert str(err.value).endswith(
        "failed after 1 tries: HTTP 500 Internal Server Error, code -1001 (internal error)"
    )
