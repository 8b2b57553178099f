"""Fault injection for the replay exchange: which faults exist and how the next one is chosen."""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# Transport / HTTP faults.
HTTP_5XX = "5xx"  # 500, 502, 503 or 504 with an HTML body (chosen by the seeded generator)
HTTP_5XX_JSON = "5xx_json"  # a 5xx with a Binance error body: -1000/-1001/-1006/-1007/-1008
HTTP_429 = "429"  # rate limited (-1003), with Retry-After
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

TRANSPORT = (HTTP_5XX, HTTP_5XX_JSON, HTTP_429, HTTP_418, SLOW, DROP)
BODY = (MALFORMED, EMPTY, OBJECT)
IMPOSSIBLE = (NAN, HIGH_LOW, NEGATIVE_VOLUME, OFF_GRID, FUTURE)
ALL = TRANSPORT + BODY + IMPOSSIBLE
GROUPS = {"all": ALL, "transport": TRANSPORT, "body": BODY, "impossible": IMPOSSIBLE}
KINDS = frozenset(ALL + (OK,))

# Binance's error codes and messages (the spot REST API's "Error codes" page).
BINANCE_MESSAGES = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: "Too many requests queued.",
    -1006: "An unexpected response was received from the message bus. Execution status unknown.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1010: "ERROR_MSG_RECEIVED.",
    -1100: "Illegal characters found in a parameter.",
    -1101: "Too many parameters sent for this endpoint.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1103: "An unknown parameter was sent.",
    -1104: "Not all sent parameters were read.",
    -1105: "A parameter was empty.",
    -1106: "A parameter was sent when not required.",
    -1108: "Invalid asset.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1112: "No orders on book for symbol.",
    -1114: "TimeInForce parameter sent when not required.",
    -1115: "Invalid timeInForce.",
    -1116: "Invalid orderType.",
    -1117: "Invalid side.",
    -1118: "New client order ID was empty.",
    -1119: "Original client order ID was empty.",
    -1120: "Invalid interval.",
    -1121: "Invalid symbol.",
    -1122: "Invalid symbolStatus.",
    -1125: "This listenKey does not exist.",
    -1127: "Lookup interval is too big.",
    -1128: "Combination of optional parameters invalid.",
    -1130: "Invalid data sent for a parameter.",
}
TEMPORARY_5XX_CODES = (-1000, -1001, -1006, -1007, -1008)
REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    418: "I'm a teapot",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def binance_body(code: int, msg: str | None = None) -> bytes:
    """``{"code": -1001, "msg": "..."}`` as Binance sends it."""
    text = BINANCE_MESSAGES.get(code, "An unknown error occurred.") if msg is None else msg
    return json.dumps({"code": code, "msg": text}).encode()


@dataclass(frozen=True)
class Answer:
    """A scripted answer in place of the real one: any status, body and ``Retry-After``."""

    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    retry_after: float | None = None

    @classmethod
    def binance(cls, status: int, code: int, retry_after: float | None = None) -> Answer:
        return cls(status, binance_body(code), retry_after=retry_after)

    @property
    def kind(self) -> str:
        return f"answer:{self.status}"


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
        self._queue: deque[str | Answer] = deque()
        self._lock = threading.Lock()

    def script(self, *kinds: str | Answer) -> None:
        """Queue faults for the next requests, in order (``"ok"`` lets one request through; an
        :class:`Answer` is sent as it is)."""
        for kind in kinds:
            if not isinstance(kind, Answer) and kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queue.extend(kinds)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def next(self) -> str | Answer | None:
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

    def choose_code(self) -> int:
        with self._lock:
            return self.rng.choice(TEMPORARY_5XX_CODES)


def mangle_body(fault: str | Answer | None, body: bytes) -> bytes:
    """A 200 answer's body after a body fault (unchanged for any other fault)."""
    if fault == MALFORMED:
        return body[: max(1, len(body) // 2)]
    if fault == EMPTY:
        return b""
    if fault == OBJECT:
        return b'{"data":[]}'
    return body
