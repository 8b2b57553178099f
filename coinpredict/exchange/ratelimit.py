"""A thread-safe request spacer shared by every ccxt instance of one adapter.

ccxt's synchronous rate limiter is per instance (it sleeps until ``rateLimit * cost`` ms after the
instance's previous request), so N worker instances would send N times the allowed rate. The
adapter replaces each instance's ``throttle`` with :meth:`SharedRateLimiter.throttle`: request
*starts* are spaced ``interval_ms`` apart across all threads, whatever the ccxt cost of the call.
For Binance (``rateLimit`` = 50 ms) that is at most 20 requests/s = 1,200/min; with klines at
weight 2 that is 2,400 of Binance's 6,000 weight per minute.
"""

from __future__ import annotations

import threading
import time


class SharedRateLimiter:
    def __init__(self, interval_ms: float) -> None:
        self.interval_s = max(0.0, interval_ms) / 1000.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until this caller may start a request."""
        if self.interval_s <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval_s
        delay = slot - now
        if delay > 0:
            time.sleep(delay)

    def throttle(self, cost: float | None = None) -> None:  # ccxt's signature
        self.acquire()
