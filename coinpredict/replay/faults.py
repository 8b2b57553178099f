"""Fault injection for the replay exchange: which faults exist and how the next one is chosen."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable

# Transport / HTTP faults.
HTTP_5XX = "5xx"  # 500, 502, 503 or 504 (chosen by the seeded generator)
HTTP_429 = "429"  # rate limited, with Retry-After
HTTP_418 = "418"  # IP banned, with Retry-After
SLOW = "slow"  # answers only after the client's timeout
DROP = "drop"  # closes the connection without any response
# HTTP 200 with a body that is not a list of candles.
MALFORMED = "malformed"  # truncated JSON
EMPTY = "empty"  # empty body
OBJECT = "object"  # a JSON object instead of a list
# "Impossible candles": one row of an otherwise correct klines answer is corrupted.
NAN = "nan"  # open price "NaN"
HIGH_LOW = "high_low"  # high < low
NEGATIVE_VOLUME = "negative_volume"  # volume < 0
OFF_GRID = "off_grid"  # open time moved 1 ms off the timeframe grid
FUTURE = "future"  # an extra candle two candles after the open one
OK = "ok"  # scripted only: let this request through untouched

TRANSPORT = (HTTP_5XX, HTTP_429, HTTP_418, SLOW, DROP)
BODY = (MALFORMED, EMPTY, OBJECT)
IMPOSSIBLE = (NAN, HIGH_LOW, NEGATIVE_VOLUME, OFF_GRID, FUTURE)
ALL = TRANSPORT + BODY + IMPOSSIBLE
GROUPS = {"all": ALL, "transport": TRANSPORT, "body": BODY, "impossible": IMPOSSIBLE}
KINDS = frozenset(ALL + (OK,))


def parse_kinds(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"5xx,drop,impossible"`` -> the fault kinds (groups ``all``, ``transport``, ``body``,
    ``impossible`` expand). Raises ValueError naming an unknown kind."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip()
        if not name:
            continue
        expanded = GROUPS.get(name, (name,))
        for kind in expanded:
            if kind not in KINDS or kind == OK:
                known = ", ".join(list(ALL) + list(GROUPS))
                raise ValueError(f"unknown fault kind {name!r} (known: {known})")
            if kind not in out:
                out.append(kind)
    return tuple(out)


class FaultPlan:
    """Chooses the fault (or ``None``) for each request to a fault-eligible endpoint.

    A scripted queue (``script``) wins; otherwise a seeded generator injects one of ``kinds`` with
    probability ``rate``. Thread-safe.
    """

    def __init__(self, rate: float = 0.0, kinds: Iterable[str] = ALL, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self.kinds = parse_kinds(kinds)
        self.rng = random.Random(seed)
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()

    def script(self, *kinds: str) -> None:
        """Queue faults for the next requests, in order (``"ok"`` lets one request through)."""
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queue.extend(kinds)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def next(self) -> str | None:
        with self._lock:
            if self._queue:
                kind = self._queue.popleft()
                return None if kind == OK else kind
            if self.rate and self.kinds and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds)
            return None

    def choose_5xx(self) -> int:
        with self._lock:
            return self.rng.choice((500, 502, 503, 504))
