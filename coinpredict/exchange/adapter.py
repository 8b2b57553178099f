"""The exchange adapter: the only code that talks to ccxt (docs/exchange.md).

Every ccxt exception is converted here, by class, into :class:`TemporaryExchangeError` (after a
bounded number of retries with exponential backoff and full jitter, honouring ``Retry-After``) or
:class:`FatalExchangeError` (at once). Every candle is validated
(:mod:`coinpredict.base.candles`) and
only closed candles are returned.
"""

from __future__ import annotations

import copy
import functools
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from coinpredict.base.candles import validate_page
from coinpredict.base.clock import Clock
from coinpredict.base.errors import ExchangeError, FatalExchangeError, TemporaryExchangeError
from coinpredict.base.symbols import validate_symbol
from coinpredict.base.timeframes import Timeframe, iso
from coinpredict.exchange import ccxt_lazy
from coinpredict.exchange.classify import Recorder, Temporary, UnknownSymbolError, classify
from coinpredict.exchange.markets import (
    DEFAULT_WEIGHT_LIMIT,
    DEFAULT_WEIGHT_WINDOW_S,
    Market,
    MarketList,
    from_binance,
    from_ccxt,
    load_cache,
    save_cache,
)
from coinpredict.exchange.ratelimit import SharedRateLimiter
from coinpredict.exchange.types import CandlePage

log = logging.getLogger("coinpredict.exchange")

T = TypeVar("T")

PAGE_LIMIT = 1000
# At this share of the exchange's request-weight limit every worker waits for the next window
# (with this margin past its turn) instead of running into a 429.
WEIGHT_SOFT_SHARE = 0.9
WEIGHT_WINDOW_MARGIN_S = 0.05
# exchanges whose klines endpoint answers a bare JSON list (anything else is a malformed page)
LIST_KLINES = frozenset({"binance", "binanceus"})


def rebase_urls(api: Any, base_url: str) -> Any:
    """Replace scheme and host of every URL in ccxt's (nested) ``urls['api']`` with
    ``base_url``, keeping each URL's path (a path in ``base_url`` is prepended)."""
    base = base_url.rstrip("/")
    if isinstance(api, dict):
        return {k: rebase_urls(v, base) for k, v in api.items()}
    if isinstance(api, str) and "://" in api:
        parts = urlsplit(api)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        return base + tail
    return api


def _call_with(fn: Callable[[Any, int], T], attempt: int, ex: Any) -> T:
    return fn(ex, attempt)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _ccxt_volumes(ex: Any, _: int) -> dict[str, float]:
    tickers = ex.fetch_tickers()
    if not isinstance(tickers, dict):
        raise Temporary("malformed response (tickers)")
    return {s: _float(t.get("quoteVolume")) for s, t in tickers.items() if isinstance(t, dict)}


def _trim(page: CandlePage, start: int) -> CandlePage:
    """The part of ``page`` from open time ``start`` on."""
    candles, texts = page.between(start)
    rejected = [r for r in page.rejected if r.ts is None or r.ts >= start]
    return CandlePage(
        start_ms=start,
        end_ms=page.end_ms,
        candles=candles,
        rejected=rejected,
        confirmed_empty=page.confirmed_empty or (not candles and not rejected),
        texts=texts,
    )


class ExchangeAdapter:
    """ccxt behind a small, strict interface. See docs/exchange.md.

    ``clock`` decides what "now" is together with the exchange's own clock: ``fetch_closed`` uses
    ``min(clock, exchange clock)`` (:meth:`exchange_now_ms`), so a local clock running ahead can
    never make the still-open candle look closed.
    """

    def __init__(
        self,
        exchange_id: str = "binance",
        base_url: str | None = None,
        *,
        clock: Clock,
        timeout_ms: int = 10_000,
        max_tries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int = 4,
        time_budget_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        reject_tries: int = 3,
        rate_limit_ms: float | None = None,
        rng: random.Random | None = None,
        time_offset_max_age_s: float = 300.0,
        markets_cache: Path | None = None,
        markets_max_age_s: float = 86_400.0,
    ) -> None:
        if not ccxt_lazy.is_exchange_id(exchange_id):
            raise FatalExchangeError(f"unknown exchange id {exchange_id!r} (not a ccxt exchange)")
        if max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        self.exchange_id = exchange_id
        self.base_url = base_url.rstrip("/") if base_url else None
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.max_tries = max_tries
        self.concurrency = max(1, concurrency)
        self.time_budget_s = time_budget_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.reject_tries = max(1, reject_tries)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._main = self._new_instance()
        interval = self._main.rateLimit if rate_limit_ms is None else rate_limit_ms
        self.rate_limit_ms = float(interval)
        self._limiter = SharedRateLimiter(self.rate_limit_ms)
        self._main.throttle = self._limiter.throttle
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._pool_lock = threading.Lock()
        self._instances: list[Any] = [self._main]
        self._executor: ThreadPoolExecutor | None = None
        self._raw = exchange_id in LIST_KLINES  # Binance: raw endpoints, no ccxt market parsing
        self.markets_cache = markets_cache
        self.markets_max_age_s = markets_max_age_s
        self._markets: MarketList | None = None
        self._refreshed = False  # the market list is fetched at most once per adapter (run)
        self._markets_loaded = False
        self._markets_lock = threading.Lock()  # concurrent first callers load them once
        self.used_weight: int | None = None  # the last X-MBX-USED-WEIGHT-1m seen
        self._weight_pause_until = 0.0
        self._offset_lock = threading.Lock()  # ... and measure the exchange clock once
        # a load or probe that gave up is not retried by every waiting caller, one after another
        # (a dead exchange would cost series x the whole retry budget): they get its error
        self._markets_error: ExchangeError | None = None
        self._offset_error: ExchangeError | None = None
        self.time_offset_max_age_s = time_offset_max_age_s
        self._offset_ms: int | None = None
        self._offset_at = 0.0
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()

    # --- ccxt instances -----------------------------------------------------------------------
    def _new_instance(self) -> Any:
        """The adapter's first instance, built by ccxt (8-30 ms of CPU: its describe() merge
        and camel-case pass over every attribute)."""
        cls = getattr(ccxt, self.exchange_id)
        ex = cls(
            {
                "enableRateLimit": True,
                "timeout": self.timeout_ms,
                "enableLastJsonResponse": True,
                "options": {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"},
            }
        )
        if self.base_url:
            ex.urls["api"] = rebase_urls(ex.urls["api"], self.base_url)
        return self._instrumented(ex)

    def _worker_instance(self) -> Any:
        """Another instance for a worker thread: a shallow copy of the first (~0.1 ms instead of
        ccxt's 8-30 ms per instance; an ingest starts up to 8). What ccxt changes per request
        (the last request, response and timestamp) it sets as attributes, so each copy keeps
        its own; the copy gets its own HTTP session, response recorder and hook. The dicts it
        shares with the first (urls, api, options, markets) are only read on requests."""
        ex = copy.copy(self._main)
        main_session = self._main.session
        ex.session = type(main_session)()
        ex.session.trust_env = main_session.trust_env
        return self._instrumented(ex)

    def _instrumented(self, ex: Any) -> Any:
        """``ex`` with its own :class:`Recorder` of each answer, and the used weight observed."""
        rec = Recorder()
        original = functools.partial(type(ex).on_rest_response, ex)  # ccxt's, never a copy's hook

        def hook(code, reason, url, method, rheaders, body, qheaders, qbody):  # noqa: ANN001
            rec.note(code, reason, rheaders, body)
            self._observe_weight(rheaders)
            return original(code, reason, url, method, rheaders, body, qheaders, qbody)

        ex.on_rest_response = hook
        ex._coinpredict_recorder = rec
        return ex

    def _borrow(self) -> Any:
        try:
            ex = self._pool.get_nowait()
        except queue.Empty:
            ex = self._worker_instance()
            ex.throttle = self._limiter.throttle
            with self._pool_lock:
                self._instances.append(ex)
        if not self._raw and self._markets_loaded and not ex.markets:  # lent out before they loaded
            ex.set_markets(self._main.markets, self._main.currencies)
        return ex

    def _give_back(self, ex: Any) -> None:
        self._pool.put(ex)

    # --- retry machinery ----------------------------------------------------------------------
    def _attempt(self, ex: Any, fn: Callable[[Any], T]) -> T:
        """Run one ccxt call; convert its exceptions (:func:`classify`)."""
        rec: Recorder = ex._coinpredict_recorder
        rec.reset()
        ex.last_json_response = None
        try:
            return fn(ex)
        except ccxt.BaseError as e:
            raise classify(e, rec, self.exchange_id, self.timeout_ms) from e
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            # ccxt choking on a body it could not parse
            raise Temporary(f"malformed response ({type(e).__name__})") from e

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        with self._rng_lock:
            ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
            delay = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _note_pause(self, seconds: float) -> None:
        """The exchange said Retry-After: no worker starts a new try before it has passed."""
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait_pause(self, honoured: float) -> tuple[float, float]:
        """Sleep out a shared pause this operation has not waited for yet.
        -> (seconds slept, the deadline now honoured)."""
        with self._pause_lock:
            until = self._pause_until
        if until <= honoured:
            return 0.0, honoured
        remaining = until - time.monotonic()
        if remaining <= 0:
            return 0.0, until
        log.warning(
            "%s: waiting %.2f s (the exchange asked to back off)", self.exchange_id, remaining
        )
        self._sleep(remaining)
        return remaining, until

    def _retry(self, what: str, fn: Callable[[Any, int], T], ex: Any | None = None) -> T:
        """Call ``fn(instance, attempt)`` until it succeeds, a fatal error, or the tries/budget
        run out. ``ex`` None = borrow a worker instance for the duration."""
        borrowed = ex is None
        inst = self._borrow() if borrowed else ex
        started = time.monotonic()
        slept = 0.0
        honoured = 0.0  # the shared pause deadline this operation has already waited for
        try:
            attempt = 0
            while True:
                attempt += 1
                waited, honoured = self._wait_pause(honoured)
                slept += waited
                try:
                    return self._attempt(inst, functools.partial(_call_with, fn, attempt))
                except Temporary as t:
                    failure = t
                except UnknownSymbolError:
                    self._refresh_markets("the exchange answered an unknown symbol")
                    raise
                if failure.retry_after is not None:
                    self._note_pause(failure.retry_after)
                if attempt >= self.max_tries:
                    break
                delay = self._backoff(attempt, failure.retry_after)
                spent = time.monotonic() - started + slept
                if spent + delay > self.time_budget_s:
                    raise TemporaryExchangeError(
                        f"{self._failed(what, failure)} after {attempt} tries "
                        f"(retry budget of {self.time_budget_s:g} s spent): {failure.reason}",
                        retry_after=failure.retry_after,
                    )
                log.warning(
                    "%s: %s failed (try %d of %d): %s; retrying in %.2f s",
                    self.exchange_id,
                    what,
                    attempt,
                    self.max_tries,
                    failure.reason,
                    delay,
                )
                self._sleep(delay)
                slept += delay
                with self._pause_lock:
                    honoured = max(honoured, self._pause_until)
            raise TemporaryExchangeError(
                f"{self._failed(what, failure)} after {attempt} tries: {failure.reason}",
                retry_after=failure.retry_after,
            )
        finally:
            if borrowed:
                self._give_back(inst)

    def _failed(self, what: str, failure: Temporary) -> str:
        if failure.network:
            return f"{self.exchange_id} unreachable ({what})"
        return f"{self.exchange_id} {what} failed"

    # --- request weight ---------------------------------------------------------------------
    def _observe_weight(self, headers: Any) -> None:
        """Read the used request weight of the current window from a response; at
        ``WEIGHT_SOFT_SHARE`` of the limit, pause every worker until the window turns."""
        ml = self._markets
        name = ml.weight_header if ml is not None else "X-MBX-USED-WEIGHT-1m"
        value = headers.get(name) if headers is not None else None
        if value is None:
            return
        try:
            used = int(value)
        except ValueError:
            return
        self.used_weight = used
        limit = ml.weight_limit if ml is not None else DEFAULT_WEIGHT_LIMIT
        window = ml.weight_window_s if ml is not None else DEFAULT_WEIGHT_WINDOW_S
        if used < limit * WEIGHT_SOFT_SHARE:
            return
        wall = time.time()
        remaining = window - (wall % window) + WEIGHT_WINDOW_MARGIN_S
        if time.monotonic() + remaining > self._weight_pause_until + 0.5:
            log.warning(
                "%s: %d of %d request weight used; waiting %.1f s for the next window",
                self.exchange_id,
                used,
                limit,
                remaining,
            )
        self._weight_pause_until = time.monotonic() + remaining
        self._note_pause(remaining)

    # --- markets, time, tickers ---------------------------------------------------------------
    def _ensure_markets(self) -> MarketList:
        ml = self._markets
        if ml is not None:
            return ml
        with self._markets_lock:
            if self._markets_error is not None:
                raise self._markets_error
            if self._markets is None:
                cached = self._cached_markets()
                try:
                    self._markets = cached or self._fetch_markets()
                except ExchangeError as exc:
                    self._markets_error = exc
                    raise
                self._markets_loaded = True
            return self._markets

    def _cached_markets(self) -> MarketList | None:
        if self.markets_cache is None:
            return None
        ml = load_cache(self.markets_cache)
        if ml is None:
            return None
        age_s = (self.clock.now_ms() - ml.fetched_at) / 1000.0
        return ml if 0 <= age_s < self.markets_max_age_s else None

    def _fetch_markets(self) -> MarketList:
        """One ``exchangeInfo`` request (ccxt's ``load_markets`` for other exchanges); the
        result is cached in the state dir."""
        self._refreshed = True
        now = self.clock.now_ms()
        if self._raw:

            def call(ex: Any, _: int) -> MarketList:
                info = ex.publicGetExchangeInfo()
                if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
                    raise Temporary("malformed response (exchangeInfo without symbols)")
                return from_binance(info, ex.safe_currency_code, now)

            ml = self._retry("load markets", call, self._main)
        else:
            markets = self._retry("load markets", lambda ex, _: ex.load_markets(), self._main)
            ml = from_ccxt(markets, now)
        if self.markets_cache is not None:
            save_cache(self.markets_cache, ml)
        return ml

    def _refresh_markets(self, why: str) -> None:
        """Fetch the market list again at once, unless this adapter (run) already fetched it."""
        with self._markets_lock:
            if self._refreshed:
                return
            log.warning("%s: %s; refreshing the market list", self.exchange_id, why)
            try:
                self._markets = self._fetch_markets()
            except ExchangeError as exc:
                log.warning("%s: cannot refresh the market list: %s", self.exchange_id, exc)

    def symbols(self) -> set[str]:
        """The loaded spot markets that are trading, as ccxt symbols."""
        return {s for s, m in self._ensure_markets().markets.items() if m.trading}

    def _market(self, symbol: str) -> Market:
        validate_symbol(symbol)
        market = self._ensure_markets().markets.get(symbol)
        if market is None:
            self._refresh_markets(f"{symbol} is not in the market list")
            market = self._ensure_markets().markets.get(symbol)
        if market is None:
            raise FatalExchangeError(f"{self.exchange_id} has no spot market {symbol}")
        return market

    def _require_market(self, symbol: str) -> None:
        self._market(symbol)

    def not_trading(self, symbol: str) -> str | None:
        """The status of a listed symbol that is not trading (``BREAK``, ``HALT`` ...), None when
        it trades (or is not listed: fetching it fails with the reason). Logged once per market
        list: a symbol is reported again only after the daily refresh."""
        market = self._market(symbol)
        if market.trading:
            return None
        ml = self._ensure_markets()
        if symbol not in ml.reported:
            log.warning(
                "%s: %s is not trading (status %s); skipped until the market list says it is",
                self.exchange_id,
                symbol,
                market.status,
            )
            with self._markets_lock:
                ml.reported.add(symbol)
                if self.markets_cache is not None:
                    save_cache(self.markets_cache, ml)
        return market.status

    def server_time_ms(self) -> int:
        def call(ex: Any, _: int) -> int:
            value = ex.fetch_time()
            if not isinstance(value, int) or value <= 0:
                raise Temporary("malformed response (no server time)")
            return value

        return self._retry("server time", call)

    def quote_volumes(self, quote: str | None = None) -> dict[str, float]:
        """24 h quote volume of every trading spot symbol (one ``ticker/24hr`` request)."""
        ml = self._ensure_markets()
        if self._raw:
            by_id = ml.by_id()

            def call(ex: Any, _: int) -> dict[str, float]:
                rows = ex.publicGetTicker24hr()
                if not isinstance(rows, list):
                    raise Temporary("malformed response (tickers)")
                return {
                    by_id[r["symbol"]].symbol: _float(r.get("quoteVolume"))
                    for r in rows
                    if isinstance(r, dict) and r.get("symbol") in by_id
                }

            volumes = self._retry("fetch tickers", call, self._main)
        else:
            volumes = self._retry("fetch tickers", _ccxt_volumes, self._main)
        return {
            s: v
            for s, v in volumes.items()
            if s in ml.markets
            and ml.markets[s].trading
            and (quote is None or ml.markets[s].quote == quote)
            and v == v
        }

    # --- candles ------------------------------------------------------------------------------
    def _klines(self, ex: Any, symbol: str, tf: Timeframe, **window: int) -> tuple[list, bool]:
        """One klines request -> (rows, the answer was a genuine empty JSON list). Binance:
        the raw answer of ``publicGetKlines`` (rows with prices as text, validated once by
        :func:`validate_page`); other exchanges: ``fetch_ohlcv``."""
        if self._raw:
            params = {"symbol": self._market(symbol).id, "interval": tf.code, **window}
            body = ex.publicGetKlines(params)
        else:
            since, limit = window.get("startTime"), window["limit"]
            extra = {"until": window["endTime"]} if "endTime" in window else {}
            rows = ex.fetch_ohlcv(symbol, tf.code, since=since, limit=limit, params=extra)
            body = ex.last_json_response
            if not isinstance(body, list):
                if not isinstance(rows, list):
                    raise Temporary("malformed response (candles are not a list)")
                return rows, False
        if isinstance(body, list):
            if not all(isinstance(r, list | dict) for r in body):
                raise Temporary("malformed response (rows are not lists)")
            return (body if self._raw else rows), len(body) == 0
        if body is None:
            raise Temporary("malformed response (body is not JSON)")
        raise Temporary(f"malformed response (a JSON {type(body).__name__}, not a list)")

    def first_candle_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """Open time of the exchange's first candle of the series (one request), None if the
        exchange has none."""
        self._require_market(symbol)

        def call(ex: Any, _: int) -> int | None:
            rows, _empty = self._klines(ex, symbol, tf, startTime=0, limit=1)
            if not rows:
                return None
            first = rows[0]
            ts = first[0] if isinstance(first, list) and first else None
            if not isinstance(ts, int) or isinstance(ts, bool) or not tf.is_aligned(ts):
                raise Temporary("malformed response (bad first candle time)")
            return ts

        return self._retry(f"first candle {symbol} {tf}", call, self._main)

    def _page(
        self,
        ex: Any,
        attempt: int,
        state: dict[str, int],
        symbol: str,
        tf: Timeframe,
        start: int,
        end: int,
        last_closed: int,
        open_ended: bool,
    ) -> CandlePage:
        rows, empty = self._klines(ex, symbol, tf, startTime=start, endTime=end, limit=PAGE_LIMIT)
        checked = validate_page(rows, tf, last_closed, start_ms=start, end_ms=end)
        candles, rejected = checked.candles, checked.rejected
        if rejected:
            state["rejecting"] += 1
            if state["rejecting"] < self.reject_tries and attempt < self.max_tries:
                reasons = sorted({r.reason for r in rejected})
                raise Temporary(f"invalid candles ({', '.join(reasons)})")
        page_end = end
        if open_ended and len(rows) >= PAGE_LIMIT and candles:
            page_end = candles[-1].ts
        return CandlePage(
            start_ms=start,
            end_ms=page_end,
            candles=candles,
            rejected=rejected,
            confirmed_empty=empty,
            texts=checked.texts,
        )

    def _fetch_page(
        self,
        symbol: str,
        tf: Timeframe,
        start: int,
        end: int,
        last_closed: int,
        open_ended: bool,
    ) -> CandlePage:
        state = {"rejecting": 0}
        return self._retry(
            f"candles {symbol} {tf} from {iso(start)}",
            lambda ex, attempt: self._page(
                ex, attempt, state, symbol, tf, start, end, last_closed, open_ended
            ),
        )

    def exchange_now_ms(self) -> int:
        """``min(clock, exchange clock)``. The exchange clock is the injected clock plus the
        offset measured with one ``/time`` request, re-measured when older than
        ``time_offset_max_age_s``."""
        if self._offset_stale():
            with self._offset_lock:
                if self._offset_error is not None:
                    raise self._offset_error
                if self._offset_stale():
                    try:
                        server = self.server_time_ms()
                    except ExchangeError as exc:
                        self._offset_error = exc
                        raise
                    self._offset_ms = server - self.clock.now_ms()
                    self._offset_at = time.monotonic()
        assert self._offset_ms is not None
        return self.clock.now_ms() + min(0, self._offset_ms)

    def _offset_stale(self) -> bool:
        age = time.monotonic() - self._offset_at
        return self._offset_ms is None or age > self.time_offset_max_age_s

    def _ready(self, symbol: str) -> int:
        """Check the symbol is a loaded spot market and return :meth:`exchange_now_ms`. On the
        first call the markets and the exchange clock are fetched in parallel (two requests,
        one latency)."""
        probe = None
        if self._markets is None and self._offset_stale():
            probe = self._get_executor().submit(self.exchange_now_ms)
        self._require_market(symbol)
        return probe.result() if probe is not None else self.exchange_now_ms()

    def fetch_closed(
        self, symbol: str, tf: Timeframe, since_ms: int, until_ms: int | None = None
    ) -> Iterator[CandlePage]:
        """Pages of closed candles covering ``[since_ms, min(until_ms, last closed open)]``, in
        ascending order and contiguous (each page starts one candle after the previous one's
        ``end_ms``). "Closed" is judged at :meth:`exchange_now_ms`. Raises FatalExchangeError /
        TemporaryExchangeError (nothing is yielded after an error)."""
        now = self._ready(symbol)
        last_closed = tf.last_closed_open(now)
        end = last_closed if until_ms is None else min(tf.floor(until_ms), last_closed)
        start = tf.floor(since_ms)
        if start < since_ms:
            start = tf.add(start, 1)
        if start > end:
            return

        def fetch(window: tuple[int, int], open_ended: bool = False) -> CandlePage:
            return self._fetch_page(symbol, tf, window[0], window[1], last_closed, open_ended)

        if self.concurrency == 1:
            yield from _pages_serial(fetch, tf, start, end)
        else:
            yield from self._pages_overlapped(fetch, tf, start, end)

    def _pages_overlapped(
        self, fetch: Callable[..., CandlePage], tf: Timeframe, start: int, end: int
    ) -> Iterator[CandlePage]:
        """The first page is open-ended: the exchange answers from its first candle at or after
        ``start`` (skipping history it does not have), so its end is only known afterwards.
        While it is in flight, the following grid windows are fetched speculatively on the bet
        that it comes back full and gap-free (ending at ``start`` + 999 candles). When it ends
        later (gaps, or history that starts after ``start``), the speculative pages are trimmed
        to begin after it, and those entirely covered by it are dropped (at most
        concurrency - 1 wasted requests per call)."""
        executor = self._get_executor()
        first_future = executor.submit(fetch, (start, end), True)
        source = _windows(tf, tf.add(start, PAGE_LIMIT), end)
        pending: deque[tuple[tuple[int, int], Future[CandlePage]]] = deque()
        try:
            _fill(pending, source, executor, fetch, self.concurrency - 1)
            first = first_future.result()
            yield first
            covered = first.end_ms
            if covered >= end:
                return
            while pending and pending[0][0][1] <= covered:  # entirely covered by the first page
                pending.popleft()[1].cancel()
            if not pending:  # the whole bet was lost: the windows start after the first page
                source = _windows(tf, tf.add(covered, 1), end)
                _fill(pending, source, executor, fetch, self.concurrency)
            while pending:
                page = pending.popleft()[1].result()
                if page.start_ms <= covered:
                    page = _trim(page, tf.add(covered, 1))
                _fill(pending, source, executor, fetch, len(pending) + 1)
                covered = page.end_ms
                yield page
        finally:
            first_future.cancel()
            for _, f in pending:
                f.cancel()

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix=f"{self.exchange_id}-fetch"
            )
        return self._executor

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        with self._pool_lock:
            instances = list(self._instances)
        for ex in instances:
            session = getattr(ex, "session", None)
            if session is not None:
                session.close()

    def __enter__(self) -> ExchangeAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _windows(tf: Timeframe, w: int, end: int) -> Iterator[tuple[int, int]]:
    """Consecutive grid windows of at most PAGE_LIMIT candles from ``w`` to ``end``."""
    while w <= end:
        w_end = min(tf.add(w, PAGE_LIMIT - 1), end)
        yield w, w_end
        w = tf.add(w_end, 1)


def _pages_serial(
    fetch: Callable[..., CandlePage], tf: Timeframe, start: int, end: int
) -> Iterator[CandlePage]:
    """One request at a time: the open-ended first page, then the grid windows after it."""
    first = fetch((start, end), True)
    yield first
    if first.end_ms < end:
        for window in _windows(tf, tf.add(first.end_ms, 1), end):
            yield fetch(window)


def _fill(
    pending: deque[tuple[tuple[int, int], Future[CandlePage]]],
    source: Iterator[tuple[int, int]],
    executor: ThreadPoolExecutor,
    fetch: Callable[..., CandlePage],
    upto: int,
) -> None:
    """Submit the next windows of ``source`` until ``upto`` requests are in flight."""
    while len(pending) < upto:
        window = next(source, None)
        if window is None:
            return
        pending.append((window, executor.submit(fetch, window)))
