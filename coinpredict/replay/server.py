"""A Binance-compatible spot REST server that replays CSV candles (see docs/replay.md).

Endpoints (what ccxt's ``binance`` class calls for spot markets): ``GET /api/v3/ping``,
``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/ticker/24hr``. Anything
else answers 404 with a Binance-style error body.

Start it in-process (``ReplayServer(...).start()``, or as a context manager) or from the CLI
(``coinpredict replay serve``).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from coinpredict.base.clock import Clock, FixedClock, SystemClock
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.replay import faults as F
from coinpredict.replay.data import Listing, ReplayData, Series, listings, market_info

# Binance request weights (spot, 2024+): klines 2, exchangeInfo 20, ticker/24hr 2/40/80.
WEIGHTS = {"ping": 1, "time": 1, "exchangeInfo": 20, "klines": 2}
WEIGHT_WINDOW_S = 60.0
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500

ENDPOINTS = {
    "/api/v3/ping": "ping",
    "/api/v3/time": "time",
    "/api/v3/exchangeInfo": "exchangeInfo",
    "/api/v3/klines": "klines",
    "/api/v3/ticker/24hr": "ticker24hr",
}


@dataclass(frozen=True)
class KlinesRequest:
    """One ``/api/v3/klines`` request as received (``fault`` is the fault injected, if any)."""

    symbol: str | None
    interval: str | None
    start_time: int | None
    end_time: int | None
    limit: int | None
    fault: str | None
    status: int


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def _int_param(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BinanceError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None


class _WeightLimiter:
    """Binance-like per-minute request weight: 429 + Retry-After over the limit; requests that
    keep coming before the Retry-After instant count as abuse, and ``ban_after`` of them earn an
    IP ban answered with 418 for ``ban_seconds``."""

    def __init__(
        self, limit: int, ban_after: int, ban_seconds: float, window_s: float = WEIGHT_WINDOW_S
    ) -> None:
        self.limit = limit
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.window_s = window_s
        # windows start at whole multiples of window_s of the wall clock (Binance: each minute)
        wall = time.time()
        self.window_start = time.monotonic() - (wall % window_s)
        self.used = 0
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self.violations = 0
        self.lock = threading.Lock()

    def charge(self, weight: int) -> tuple[int | None, float, int]:
        """-> (status to answer instead: 429/418/None, retry-after seconds, used weight)."""
        with self.lock:
            now = time.monotonic()
            if now - self.window_start >= self.window_s:
                elapsed = now - self.window_start
                self.window_start += (elapsed // self.window_s) * self.window_s
                self.used = 0
            if now < self.banned_until:
                return 418, self.banned_until - now, self.used
            if now < self.blocked_until:
                self.violations += 1
                if self.violations >= self.ban_after:
                    self.banned_until = now + self.ban_seconds
                    self.violations = 0
                    return 418, self.ban_seconds, self.used
                return 429, self.blocked_until - now, self.used
            self.used += weight
            if self.used > self.limit:
                self.blocked_until = self.window_start + self.window_s
                return 429, self.blocked_until - now, self.used
            return None, 0.0, self.used


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many concurrent clients (the stdlib default is 5)


class ReplayServer:
    """The replay exchange. ``start()`` binds 127.0.0.1:``port`` (0 = a free port) and serves in a
    background thread; ``stop()`` shuts it down. Counters: ``counts[endpoint]`` (``klines``,
    ``exchangeInfo``, ``ticker24hr``, ``time``, ``ping``, ``other``, ``total``), ``klines_log``
    (every klines request, in arrival order) and ``faults_injected`` (kind -> count).

    ``markets``: how many symbols ``exchangeInfo`` lists (0 = only those with data; the CLI's
    default is Binance's ~3,500): the data's own markets, TRADING, then synthetic ones with
    Binance's mix of quotes and statuses (TRADING, BREAK, HALT), listed but without candles."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        now_ms: int | None = None,
        shift_to_now: bool = False,
        latency_ms: float = 0.0,
        rate_limit: bool = True,
        weight_limit: int = 6000,
        weight_window_s: int = 60,
        markets: int = 0,
        ban_after: int = 3,
        ban_seconds: float = 120.0,
        fault_rate: float = 0.0,
        faults: str | Iterable[str] = F.ALL,
        seed: int = 0,
        fault_endpoints: Iterable[str] = ("klines",),
        fault_retry_after_s: int = 1,
        slow_s: float = 12.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if clock is not None and now_ms is not None:
            raise ValueError("give either clock or now_ms, not both")
        self.clock: Clock = FixedClock(now_ms) if now_ms is not None else (clock or SystemClock())
        self.data = ReplayData.load(data_dir)
        if shift_to_now:
            self.data.shift_to(self.clock.now_ms())
        self.latency_ms = latency_ms
        self.limiter = (
            _WeightLimiter(weight_limit, ban_after, ban_seconds, weight_window_s)
            if rate_limit
            else None
        )
        self.weight_window_s = weight_window_s
        self.weight_limit = weight_limit
        self.listing: dict[str, Listing] = listings(self.data.markets(), markets)
        self._info_cache: bytes | None = None
        self._floor: float | None = None
        self.plan = F.FaultPlan(fault_rate, faults, seed)
        self.fault_endpoints = frozenset(fault_endpoints)
        self.fault_retry_after_s = fault_retry_after_s
        self.slow_s = slow_s
        self.host = host
        self._port = port
        self.counts: Counter[str] = Counter()
        self.klines_log: list[KlinesRequest] = []
        self.faults_injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> ReplayServer:
        if self._httpd is not None:
            return self
        self.exchange_info_body({})  # encode the (possibly 6 MB) symbol list before serving
        handler = _make_handler(self)
        httpd = _Server((self.host, self._port), handler)
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"replay:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._port
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- test helpers -----------------------------------------------------------------------
    def script_faults(self, *kinds: str) -> None:
        """Inject these faults into the next fault-eligible requests, in order."""
        self.plan.script(*kinds)

    def set_status(self, market_id: str, status: str | None) -> None:
        """Change a listed symbol's status (``BREAK``, ``HALT``, ``TRADING``); None delists it
        (gone from ``exchangeInfo``, klines answer -1121 "Invalid symbol.")."""
        with self._lock:
            if status is None:
                self.listing.pop(market_id, None)
            else:
                old = self.listing[market_id]
                self.listing[market_id] = Listing(
                    old.market_id, old.base, old.quote, status, old.has_data
                )
            self._info_cache = None

    def reset_counters(self) -> None:
        with self._lock:
            self.counts.clear()
            self.klines_log.clear()
            self.faults_injected.clear()

    def klines_requests_overlapping(self, symbol: str, interval: str, start: int, end: int):
        """Logged klines requests for ``symbol``/``interval`` whose window could include any open
        time in ``[start, end]`` (a request without startTime/endTime is open-ended)."""
        out = []
        for r in list(self.klines_log):
            if r.symbol != symbol or r.interval != interval:
                continue
            lo = r.start_time if r.start_time is not None else -math.inf
            hi = r.end_time if r.end_time is not None else math.inf
            if lo <= end and hi >= start:
                out.append(r)
        return out

    # --- request handling -------------------------------------------------------------------
    def _record(self, endpoint: str) -> None:
        with self._lock:
            self.counts[endpoint] += 1
            self.counts["total"] += 1

    @property
    def weight_header(self) -> str:
        """``X-MBX-USED-WEIGHT-1m`` (interval number and letter of the weight window)."""
        n, unit = _interval(self.weight_window_s)
        return f"X-MBX-USED-WEIGHT-{n}{unit[0].lower()}"

    def next_fault(self, endpoint: str) -> str | F.Answer | None:
        if endpoint not in self.fault_endpoints:
            return None
        fault = self.plan.next()
        if fault is not None:
            with self._lock:
                self.faults_injected[fault.kind if isinstance(fault, F.Answer) else fault] += 1
        return fault

    def fault_answer(self, fault: str | F.Answer | None) -> F.Answer | None:
        """The HTTP error answer a fault stands for (None: not an HTTP-status fault)."""
        if isinstance(fault, F.Answer):
            return fault
        if fault == F.HTTP_5XX:
            status = self.plan.choose_5xx()
            html = f"<html><body>{status} {F.REASONS[status]}</body></html>"
            return F.Answer(status, html.encode(), "text/html")
        if fault == F.HTTP_5XX_JSON:
            return F.Answer.binance(self.plan.choose_5xx(), self.plan.choose_code())
        if fault in (F.HTTP_429, F.HTTP_418):
            body = F.binance_body(-1003, "Too many requests (injected).")
            return F.Answer(int(fault), body, retry_after=self.fault_retry_after_s)
        return None

    def log_klines(self, params: dict[str, str], fault: str | None, status: int) -> None:
        def as_int(name: str) -> int | None:
            try:
                return int(params[name]) if params.get(name) else None
            except ValueError:
                return None

        entry = KlinesRequest(
            params.get("symbol"),
            params.get("interval"),
            as_int("startTime"),
            as_int("endTime"),
            as_int("limit"),
            fault,
            status,
        )
        with self._lock:
            self.klines_log.append(entry)

    def klines_body(self, params: dict[str, str], fault: str | None) -> bytes:
        series, picked = self.klines_rows(params)
        if series is None:
            return b"[]"
        if fault in F.IMPOSSIBLE:
            rows = _corrupt(fault, series, picked, self.clock.now_ms())
        else:
            rows = [(i, ts, series.rows[i]) for i, ts in picked]
        return ("[" + ",".join(_kline_json(series, i, ts, r) for i, ts, r in rows) + "]").encode()

    def json_handlers(self) -> dict[str, Callable[[dict[str, str]], bytes]]:
        def dumps(fn: Callable[[dict[str, str]], object]) -> Callable[[dict[str, str]], bytes]:
            return lambda params: json.dumps(fn(params), separators=(",", ":")).encode()

        return {
            "ping": dumps(self.handle_ping),
            "time": dumps(self.handle_time),
            "exchangeInfo": self.exchange_info_body,
            "ticker24hr": dumps(self.handle_ticker),
        }

    def weight_of(self, endpoint: str, params: dict[str, str]) -> int:
        if endpoint == "ticker24hr":
            if params.get("symbol"):
                return 2
            raw = params.get("symbols")
            if raw:
                try:
                    n = len(json.loads(raw))
                except ValueError:
                    n = 1
                return 2 if n <= 20 else 40 if n <= 100 else 80
            return 80
        return WEIGHTS.get(endpoint, 1)

    def handle_ping(self, params: dict[str, str]) -> object:
        return {}

    def handle_time(self, params: dict[str, str]) -> object:
        return {"serverTime": self.clock.now_ms()}

    def exchange_info_body(self, params: dict[str, str]) -> bytes:
        """The ``exchangeInfo`` answer; the symbol list is encoded once per change of it."""
        with self._lock:
            cached = self._info_cache
            items = list(self.listing.values()) if cached is None else []
        if cached is None:
            cached = json.dumps([market_info(x) for x in items], separators=(",", ":")).encode()
            with self._lock:
                self._info_cache = cached
        head = json.dumps(self.handle_exchange_info(params), separators=(",", ":")).encode()
        return head[:-1] + b',"symbols":' + cached + b"}"

    def handle_exchange_info(self, params: dict[str, str]) -> dict[str, object]:
        """Everything of ``exchangeInfo`` but its ``symbols``."""
        n, unit = _interval(self.weight_window_s)
        return {
            "timezone": "UTC",
            "serverTime": self.clock.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": unit,
                    "intervalNum": n,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
        }

    def _series(self, params: dict[str, str]) -> tuple[str, Series | None]:
        symbol = params.get("symbol")
        if not symbol:
            raise BinanceError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        interval = params.get("interval")
        if not interval:
            raise BinanceError(
                400,
                -1102,
                "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
            )
        if symbol not in self.listing:
            raise BinanceError(400, -1121, "Invalid symbol.")
        if interval not in TIMEFRAMES:
            raise BinanceError(400, -1120, "Invalid interval.")
        return symbol, self.data.get(symbol, interval)

    def klines_rows(self, params: dict[str, str]) -> tuple[Series | None, list[tuple[int, int]]]:
        """The (series, [(index, open_ms)]) a klines request selects, Binance semantics."""
        _, series = self._series(params)
        start = _int_param(params, "startTime")
        end = _int_param(params, "endTime")
        limit = _int_param(params, "limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        if limit < 1 or limit > MAX_LIMIT:
            raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if series is None:
            return None, []
        hi = series.visible_end(self.clock.now_ms())
        if end is not None:
            hi = min(hi, series.visible_end(end))
        if start is not None:
            lo = bisect.bisect_left(series.ts, start)
            idx = range(lo, min(hi, lo + limit))
        else:
            idx = range(max(0, hi - limit), hi)
        return series, [(i, series.ts[i]) for i in idx]

    def handle_ticker(self, params: dict[str, str]) -> object:
        markets = self.listing
        if params.get("symbol"):
            symbol = params["symbol"]
            if symbol not in markets:
                raise BinanceError(400, -1121, "Invalid symbol.")
            return self._ticker(symbol)
        if params.get("symbols"):
            try:
                wanted = json.loads(params["symbols"])
                if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
                    raise ValueError
            except ValueError:
                raise BinanceError(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            for s in wanted:
                if s not in markets:
                    raise BinanceError(400, -1121, "Invalid symbol.")
            return [self._ticker(s) for s in wanted]
        return [self._ticker(s) for s in sorted(markets)]

    def _ticker(self, market_id: str) -> dict[str, object]:
        """The 24 h ticker from the last day of candles up to now (1h, else 1m, 1d, 1w, 1M)."""
        now = self.clock.now_ms()
        if not self.listing[market_id].has_data:
            return _ticker_dict(market_id, now, _synthetic_day(market_id, self._volume_floor()))
        for code in ("1h", "1m", "1d", "1w", "1M"):
            series = self.data.get(market_id, code)
            hi = series.visible_end(now) if series is not None else 0
            if series is None or hi == 0:
                continue
            lo = min(bisect.bisect_right(series.ts, now - DAY_MS), hi - 1)
            return _ticker_dict(market_id, now, [series.rows[i] for i in range(lo, hi)])
        return _ticker_dict(market_id, now, [])

    def _volume_floor(self) -> float:
        """Quote volume that every synthetic symbol stays below: a tenth of the smallest day of
        any data-backed symbol (so that ``top:N`` ranks the symbols with candles first)."""
        if self._floor is None:
            volumes = [
                float(t["quoteVolume"])  # type: ignore[arg-type]
                for mid, item in self.listing.items()
                if item.has_data
                for t in [self._ticker(mid)]
            ]
            positive = [v for v in volumes if v > 0]
            self._floor = min(positive) / 10 if positive else 1000.0
        return self._floor


Row5 = tuple[str, str, str, str, str]


def _synthetic_day(market_id: str, ceiling: float) -> list[Row5]:
    """One made-up 24 h candle for a listed symbol without data, below ``ceiling`` volume."""
    h = int.from_bytes(hashlib.sha256(market_id.encode()).digest()[:8], "big")
    price = 0.0001 + (h % 1_000_000) / 1000.0
    quote_volume = ceiling * (0.05 + 0.9 * ((h >> 20) % 1000) / 1000.0)
    volume = quote_volume / price
    p = f"{price:.8f}"
    return [(p, f"{price * 1.02:.8f}", f"{price * 0.98:.8f}", p, f"{volume:.8f}")]


def _ticker_dict(market_id: str, now: int, rows: list[Row5]) -> dict[str, object]:
    """Binance's ticker/24hr object over ``rows`` (open, high, low, close, volume as text)."""
    if rows:
        opens, last = float(rows[0][0]), float(rows[-1][3])
        high = max(float(r[1]) for r in rows)
        low = min(float(r[2]) for r in rows)
        volume = sum(float(r[4]) for r in rows)
        quote_volume = sum(float(r[3]) * float(r[4]) for r in rows)
    else:
        opens = last = high = low = volume = quote_volume = 0.0
    change = last - opens
    zero = "0.00000000"
    return {
        "symbol": market_id,
        "priceChange": f"{change:.8f}",
        "priceChangePercent": f"{(change / opens * 100) if opens else 0.0:.3f}",
        "weightedAvgPrice": f"{(quote_volume / volume) if volume else last:.8f}",
        "prevClosePrice": f"{opens:.8f}",
        "lastPrice": f"{last:.8f}",
        "lastQty": zero,
        "bidPrice": f"{last:.8f}",
        "bidQty": zero,
        "askPrice": f"{last:.8f}",
        "askQty": zero,
        "openPrice": f"{opens:.8f}",
        "highPrice": f"{high:.8f}",
        "lowPrice": f"{low:.8f}",
        "volume": f"{volume:.8f}",
        "quoteVolume": f"{quote_volume:.8f}",
        "openTime": now - DAY_MS,
        "closeTime": now,
        "firstId": 0 if rows else -1,
        "lastId": len(rows) - 1,
        "count": len(rows),
    }


def _interval(window_s: int) -> tuple[int, str]:
    """A weight window as Binance's (intervalNum, interval): 60 -> (1, "MINUTE")."""
    if window_s % 86_400 == 0:
        return window_s // 86_400, "DAY"
    if window_s % 60 == 0:
        return window_s // 60, "MINUTE"
    return window_s, "SECOND"


def _kline_json(series: Series, i: int, ts: int, row: tuple[str, str, str, str, str]) -> str:
    o, h, lo, c, v = row
    close_time = series.tf.add(ts, 1) - 1
    try:
        quote_volume = f"{float(c) * float(v):.8f}"
    except ValueError:
        quote_volume = "0.00000000"
    return (
        f'[{ts},"{o}","{h}","{lo}","{c}","{v}",{close_time},"{quote_volume}",{i % 997 + 1},'
        f'"0.00000000","0.00000000","0"]'
    )


def _corrupt(
    kind: str, series: Series, picked: list[tuple[int, int]], now_ms: int
) -> list[tuple[int, int, tuple[str, str, str, str, str]]]:
    """Apply an "impossible candle" fault to the selected rows."""
    rows = [(i, ts, series.rows[i]) for i, ts in picked]
    if kind == F.FUTURE:
        tf = series.tf
        future = tf.add(tf.floor(now_ms), 2)
        template = rows[-1][2] if rows else ("1", "1", "1", "1", "1")
        rows.append((0, future, template))
        return rows
    if not rows:
        return rows
    k = len(rows) // 2
    i, ts, (o, h, lo, c, v) = rows[k]
    if kind == F.NAN:
        o = "NaN"
    elif kind == F.HIGH_LOW:
        h, lo = lo, h
        if float(h) >= float(lo):
            h = repr(float(lo) / 2)
    elif kind == F.NEGATIVE_VOLUME:
        v = "-" + v if float(v) > 0 else "-1.0"
    elif kind == F.OFF_GRID:
        ts = ts + 1
    rows[k] = (i, ts, (o, h, lo, c, v))
    return rows


class _Handler(BaseHTTPRequestHandler):
    replay: ReplayServer  # set by _make_handler

    protocol_version = "HTTP/1.1"
    server_version = "coinpredict-replay"
    sys_version = ""
    # Headers and body leave in two writes; with Nagle on, a keep-alive connection would
    # hold the body until the client's delayed ACK (~40 ms per request). Exchanges don't.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        used: int = 0,
        retry_after: float | None = None,
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header(self.replay.weight_header, str(used))
            self.send_header("X-MBX-USED-WEIGHT", str(used))
            if retry_after is not None:
                self.send_header("Retry-After", str(max(1, math.ceil(retry_after))))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_answer(self, answer: F.Answer, used: int) -> None:
        self._send(
            answer.status,
            answer.body,
            used=used,
            retry_after=answer.retry_after,
            content_type=answer.content_type,
        )

    def _error(self, status: int, code: int, msg: str, **kw: object) -> None:
        body = F.binance_body(code, msg)
        self._send(status, body, **kw)  # type: ignore[arg-type]

    def do_GET(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        endpoint = ENDPOINTS.get(split.path, "other")
        self.replay._record(endpoint)
        if self.replay.latency_ms:
            time.sleep(self.replay.latency_ms / 1000.0)
        refused, used = self._charge(endpoint, params)
        if refused:
            return
        fault = self.replay.next_fault(endpoint)
        try:
            self._dispatch(endpoint, params, fault, used)
        except BinanceError as e:
            self._log(endpoint, params, fault, e.status)
            self._error(e.status, e.code, e.msg, used=used)

    def _charge(self, endpoint: str, params: dict[str, str]) -> tuple[bool, int]:
        """Count the request's weight. -> (answered with 429/418 already, used weight)."""
        if self.replay.limiter is None or endpoint == "other":
            return False, 0
        status, wait, used = self.replay.limiter.charge(self.replay.weight_of(endpoint, params))
        if status is None:
            return False, used
        self._log(endpoint, params, None, status)
        if status == 429:
            msg = (
                "Too many requests; current limit of IP is "
                f"{self.replay.limiter.limit} request weight per 1 MINUTE."
            )
        else:
            msg = "Way too many requests; IP banned."
        self._error(status, -1003, msg, used=used, retry_after=wait)
        return True, used

    def _log(self, endpoint: str, params: dict[str, str], fault: Fault, status: int) -> None:
        if endpoint == "klines":
            self.replay.log_klines(params, _fault_name(fault), status)

    def _dispatch(self, endpoint: str, params: dict[str, str], fault: Fault, used: int) -> None:
        # transport faults first: they do not depend on the answer
        if fault == F.DROP:
            self._log(endpoint, params, fault, 0)
            self.close_connection = True
            return
        answer = self.replay.fault_answer(fault)
        if answer is not None:
            self._log(endpoint, params, fault, answer.status)
            self._send_answer(answer, used)
            return
        if fault == F.SLOW:
            self.replay._stopping.wait(self.replay.slow_s)
        body = self._answer(endpoint, params, fault)
        if body is not None:
            self._send(200, F.mangle_body(fault, body), used=used)

    def _answer(self, endpoint: str, params: dict[str, str], fault: Fault) -> bytes | None:
        if endpoint == "klines":
            body = self.replay.klines_body(params, _fault_name(fault))
            self._log(endpoint, params, fault, 200)
            return body
        handler = self.replay.json_handlers().get(endpoint)
        if handler is None:
            self._error(404, -1000, f"Unknown endpoint {urlsplit(self.path).path}.")
            return None
        return handler(params)


def _make_handler(replay: ReplayServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"replay": replay})


Fault = str | F.Answer | None


def _fault_name(fault: Fault) -> str | None:
    return fault.kind if isinstance(fault, F.Answer) else fault
