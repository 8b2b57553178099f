"""A Binance-compatible spot REST server that replays CSV candles (see docs/replay.md).

Endpoints (what ccxt's ``binance`` class calls for spot markets): ``GET /api/v3/ping``,
``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/ticker/24hr``. Anything
else answers 404 with a Binance-style error body.

Start it in-process (``ReplayServer(...).start()``, or as a context manager) or from the CLI
(``coinpredict replay serve``).
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from coinpredict.base.clock import Clock, FixedClock, SystemClock
from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES
from coinpredict.replay import faults as F
from coinpredict.replay.data import ReplayData, Series

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

    def __init__(self, limit: int, ban_after: int, ban_seconds: float) -> None:
        self.limit = limit
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.window_start = time.monotonic()
        self.used = 0
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self.violations = 0
        self.lock = threading.Lock()

    def charge(self, weight: int) -> tuple[int | None, float, int]:
        """-> (status to answer instead: 429/418/None, retry-after seconds, used weight)."""
        with self.lock:
            now = time.monotonic()
            if now - self.window_start >= WEIGHT_WINDOW_S:
                elapsed = now - self.window_start
                self.window_start += (elapsed // WEIGHT_WINDOW_S) * WEIGHT_WINDOW_S
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
                self.blocked_until = self.window_start + WEIGHT_WINDOW_S
                return 429, self.blocked_until - now, self.used
            return None, 0.0, self.used


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many concurrent clients (the stdlib default is 5)


class ReplayServer:
    """The replay exchange. ``start()`` binds 127.0.0.1:``port`` (0 = a free port) and serves in a
    background thread; ``stop()`` shuts it down. Counters: ``counts[endpoint]`` (``klines``,
    ``exchangeInfo``, ``ticker24hr``, ``time``, ``ping``, ``other``, ``total``), ``klines_log``
    (every klines request, in arrival order) and ``faults_injected`` (kind -> count)."""

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
        self.limiter = _WeightLimiter(weight_limit, ban_after, ban_seconds) if rate_limit else None
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

    def handle_exchange_info(self, params: dict[str, str]) -> object:
        symbols = []
        for market_id, (base, quote) in sorted(self.data.markets().items()):
            symbols.append(_market_info(market_id, base, quote))
        return {
            "timezone": "UTC",
            "serverTime": self.clock.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.limiter.limit if self.limiter else 6000,
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
            "symbols": symbols,
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
        if symbol not in self.data.markets():
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
        markets = self.data.markets()
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
        now = self.clock.now_ms()
        chosen: list[tuple[int, tuple[str, str, str, str, str]]] = []
        for code in ("1h", "1m", "1d", "1w", "1M"):
            series = self.data.get(market_id, code)
            if series is None:
                continue
            hi = series.visible_end(now)
            if hi == 0:
                continue
            lo = bisect.bisect_right(series.ts, now - DAY_MS)
            lo = min(lo, hi - 1)
            chosen = [(series.ts[i], series.rows[i]) for i in range(lo, hi)]
            break
        info: dict[str, object] = {"symbol": market_id}
        if not chosen:
            zero = "0.00000000"
            info.update(
                priceChange=zero,
                priceChangePercent="0.000",
                weightedAvgPrice=zero,
                prevClosePrice=zero,
                lastPrice=zero,
                lastQty=zero,
                bidPrice=zero,
                bidQty=zero,
                askPrice=zero,
                askQty=zero,
                openPrice=zero,
                highPrice=zero,
                lowPrice=zero,
                volume=zero,
                quoteVolume=zero,
                openTime=now - DAY_MS,
                closeTime=now,
                firstId=-1,
                lastId=-1,
                count=0,
            )
            return info
        opens = float(chosen[0][1][0])
        last = float(chosen[-1][1][3])
        high = max(float(r[1]) for _, r in chosen)
        low = min(float(r[2]) for _, r in chosen)
        volume = sum(float(r[4]) for _, r in chosen)
        quote_volume = sum(float(r[3]) * float(r[4]) for _, r in chosen)
        change = last - opens
        info.update(
            priceChange=f"{change:.8f}",
            priceChangePercent=f"{(change / opens * 100) if opens else 0.0:.3f}",
            weightedAvgPrice=f"{(quote_volume / volume) if volume else last:.8f}",
            prevClosePrice=f"{opens:.8f}",
            lastPrice=f"{last:.8f}",
            lastQty="0.00000000",
            bidPrice=f"{last:.8f}",
            bidQty="0.00000000",
            askPrice=f"{last:.8f}",
            askQty="0.00000000",
            openPrice=f"{opens:.8f}",
            highPrice=f"{high:.8f}",
            lowPrice=f"{low:.8f}",
            volume=f"{volume:.8f}",
            quoteVolume=f"{quote_volume:.8f}",
            openTime=now - DAY_MS,
            closeTime=now,
            firstId=0,
            lastId=len(chosen) - 1,
            count=len(chosen),
        )
        return info


def _market_info(market_id: str, base: str, quote: str) -> dict[str, object]:
    return {
        "symbol": market_id,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.00000001",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.00000001",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00000001",
                "maxQty": "9000000.00000000",
                "stepSize": "0.00000001",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


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


def _make_handler(replay: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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
                self.send_header("X-MBX-USED-WEIGHT-1M", str(used))
                if retry_after is not None:
                    self.send_header("Retry-After", str(max(1, math.ceil(retry_after))))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _error(self, status: int, code: int, msg: str, **kw: object) -> None:
            body = json.dumps({"code": code, "msg": msg}).encode()
            self._send(status, body, **kw)  # type: ignore[arg-type]

        def do_GET(self) -> None:  # noqa: N802
            split = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            endpoint = ENDPOINTS.get(split.path, "other")
            replay._record(endpoint)
            if replay.latency_ms:
                time.sleep(replay.latency_ms / 1000.0)
            used = 0
            if replay.limiter is not None and endpoint != "other":
                status, wait, used = replay.limiter.charge(replay.weight_of(endpoint, params))
                if status is not None:
                    if endpoint == "klines":
                        self._log_klines(params, None, status)
                    if status == 429:
                        self._error(
                            429,
                            -1003,
                            "Too many requests; current limit of IP is "
                            f"{replay.limiter.limit} request weight per 1 MINUTE.",
                            used=used,
                            retry_after=wait,
                        )
                    else:
                        self._error(
                            418,
                            -1003,
                            "Way too many requests; IP banned.",
                            used=used,
                            retry_after=wait,
                        )
                    return
            fault = replay.plan.next() if endpoint in replay.fault_endpoints else None
            if fault is not None:
                with replay._lock:
                    replay.faults_injected[fault] += 1
            try:
                self._dispatch(endpoint, params, fault, used)
            except BinanceError as e:
                if endpoint == "klines":
                    self._log_klines(params, fault, e.status)
                self._error(e.status, e.code, e.msg, used=used)

        def _log_klines(self, params: dict[str, str], fault: str | None, status: int) -> None:
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
            with replay._lock:
                replay.klines_log.append(entry)

        def _dispatch(
            self, endpoint: str, params: dict[str, str], fault: str | None, used: int
        ) -> None:
            # transport faults first: they do not depend on the answer
            if fault == F.DROP:
                if endpoint == "klines":
                    self._log_klines(params, fault, 0)
                self.close_connection = True
                return
            if fault in (F.HTTP_5XX, F.HTTP_429, F.HTTP_418):
                status = replay.plan.choose_5xx() if fault == F.HTTP_5XX else int(fault)
                if endpoint == "klines":
                    self._log_klines(params, fault, status)
                if status in (429, 418):
                    self._error(
                        status,
                        -1003,
                        "Too many requests (injected).",
                        used=used,
                        retry_after=replay.fault_retry_after_s,
                    )
                else:
                    reason = {
                        500: "Internal Server Error",
                        502: "Bad Gateway",
                        503: "Service Unavailable",
                        504: "Gateway Timeout",
                    }[status]
                    self._send(
                        status,
                        f"<html><body>{status} {reason}</body></html>".encode(),
                        used=used,
                        content_type="text/html",
                    )
                return
            if fault == F.SLOW:
                replay._stopping.wait(replay.slow_s)
            body = self._answer(endpoint, params, fault)
            if body is None:
                return
            if fault == F.MALFORMED:
                body = body[: max(1, len(body) // 2)]
            elif fault == F.EMPTY:
                body = b""
            elif fault == F.OBJECT:
                body = b'{"data":[]}'
            self._send(200, body, used=used)

        def _answer(self, endpoint: str, params: dict[str, str], fault: str | None) -> bytes | None:
            if endpoint == "klines":
                series, picked = replay.klines_rows(params)
                self._log_klines(params, fault, 200)
                if series is None:
                    return b"[]"
                if fault in F.IMPOSSIBLE:
                    rows = _corrupt(fault, series, picked, replay.clock.now_ms())
                else:
                    rows = [(i, ts, series.rows[i]) for i, ts in picked]
                return (
                    "[" + ",".join(_kline_json(series, i, ts, r) for i, ts, r in rows) + "]"
                ).encode()
            if endpoint == "ping":
                payload = replay.handle_ping(params)
            elif endpoint == "time":
                payload = replay.handle_time(params)
            elif endpoint == "exchangeInfo":
                payload = replay.handle_exchange_info(params)
            elif endpoint == "ticker24hr":
                payload = replay.handle_ticker(params)
            else:
                self._error(404, -1000, f"Unknown endpoint {urlsplit(self.path).path}.")
                return None
            return json.dumps(payload, separators=(",", ":")).encode()

    return Handler
