"""How one failed ccxt call is classified at the adapter edge (docs/exchange.md, "Classification").

Binance's own error code decides where ccxt's exception class is too broad (ccxt turns -1001
"Internal error; ... Please try again." into ``OperationFailed``, a 5xx with a JSON body into
whatever the code maps to). Otherwise the ccxt class decides. The result is either
:class:`Temporary` (worth retrying) or :class:`FatalExchangeError` (for that series, at once).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ccxt

from coinpredict.base.errors import FatalExchangeError

# Binance codes that mean "the request may not have been processed; try again".
TEMPORARY_CODES = {
    -1000: "unknown error",
    -1001: "internal error",
    -1003: "too many requests",
    -1006: "unexpected response",
    -1007: "backend timeout",
    -1008: "server busy",
}
# -1100 ... -1130: the request itself is wrong (a parameter, the symbol, the interval).
FATAL_CODES = range(-1130, -1099)
UNKNOWN_SYMBOL = -1121


class UnknownSymbolError(FatalExchangeError):
    """The exchange answered "Invalid symbol." (-1121): the market list may be out of date."""


class Temporary(Exception):
    """One failed try that is worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None, network: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.network = network


@dataclass
class Recorder:
    """What the last HTTP response of one ccxt instance looked like (filled by a response hook).
    ``body`` is kept for error answers only (status >= 400)."""

    status: int | None = None
    reason: str = ""
    headers: Any = None
    body: str | None = None

    def reset(self) -> None:
        self.status = None
        self.reason = ""
        self.headers = None
        self.body = None

    def note(self, status: int, reason: str, headers: Any, body: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body if status >= 400 else None

    def http(self) -> str:
        return f"HTTP {self.status} {self.reason}".strip()

    def retry_after(self) -> float | None:
        if self.headers is None:
            return None
        value = self.headers.get("Retry-After")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None

    def code(self) -> int | None:
        """The Binance error code of the last error answer (``{"code": -1001, "msg": ...}``)."""
        body = (self.body or "").strip()
        if not body.startswith("{"):
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        code = data.get("code") if isinstance(data, dict) else None
        return code if isinstance(code, int) and not isinstance(code, bool) else None


def short(text: object, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _cause_text(exc: BaseException) -> str:
    parts = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " | ".join(parts)


NETWORK_REASONS = (
    (("Connection refused", "Errno 111"), "connection refused"),
    (("RemoteDisconnected", "without response"), "connection closed without a response"),
    (("Connection reset", "ECONNRESET"), "connection reset"),
    (("Name or service not known", "NameResolution"), "host name not resolved"),
)


def network_reason(exc: BaseException) -> str:
    text = _cause_text(exc)
    for needles, reason in NETWORK_REASONS:
        if any(n in text for n in needles):
            return reason
    return "network error"


def _by_code(rec: Recorder, exchange_id: str, exc: BaseException) -> Exception | None:
    code = rec.code()
    if code in TEMPORARY_CODES:
        return Temporary(
            f"{rec.http()}, code {code} ({TEMPORARY_CODES[code]})", retry_after=rec.retry_after()
        )
    if rec.status is not None and rec.status >= 500:  # the outcome is unknown, not failed
        return Temporary(rec.http(), retry_after=rec.retry_after())
    if code == UNKNOWN_SYMBOL:
        return UnknownSymbolError(f"{exchange_id}: unknown symbol ({short(exc)})")
    if code is not None and code in FATAL_CODES:
        return FatalExchangeError(f"{exchange_id}: bad request ({short(exc)})")
    return None


def _rate_limited(rec: Recorder) -> Temporary:
    what = "banned" if rec.status == 418 else "rate limited"
    label = f" (HTTP {rec.status})" if rec.status else ""
    return Temporary(f"{what}{label}", retry_after=rec.retry_after())


Rule = Callable[[BaseException, Recorder, str, int], Exception]


def _fatal(label: str) -> Rule:
    return lambda e, rec, xid, _: FatalExchangeError(f"{xid}: {label} ({short(e)})")


def _unknown_symbol(e: BaseException, rec: Recorder, xid: str, _: int) -> Exception:
    return UnknownSymbolError(f"{xid}: unknown symbol ({short(e)})")


def _timeout(e: BaseException, rec: Recorder, xid: str, timeout_ms: int) -> Exception:
    return Temporary(f"request timed out after {timeout_ms} ms", network=True)


def _unavailable(e: BaseException, rec: Recorder, xid: str, _: int) -> Exception:
    reason = rec.http() if rec.status is not None else "exchange not available"
    return Temporary(reason, retry_after=rec.retry_after())


def _network(e: BaseException, rec: Recorder, xid: str, _: int) -> Exception:
    return Temporary(network_reason(e), network=True)


def _operation_failed(e: BaseException, rec: Recorder, xid: str, _: int) -> Exception:
    label = f"{rec.http()}, " if rec.status is not None else ""
    return Temporary(f"{label}operation failed ({short(e, 80)})")


# First matching class wins: subclasses before their bases.
CLASS_RULES: tuple[tuple[type[BaseException], Rule], ...] = (
    (ccxt.BadSymbol, _unknown_symbol),
    (ccxt.PermissionDenied, _fatal("permission denied")),
    (ccxt.AuthenticationError, _fatal("authentication failed")),
    (ccxt.BadRequest, _fatal("bad request")),
    (ccxt.RequestTimeout, _timeout),
    (ccxt.ExchangeNotAvailable, _unavailable),  # 5xx, maintenance, unexpected 4xx
    (ccxt.NetworkError, _network),
    (ccxt.OperationFailed, _operation_failed),  # no known code: retried, bounded as usual
    (ccxt.ExchangeError, _fatal("exchange error")),
)


def classify(exc: BaseException, rec: Recorder, exchange_id: str, timeout_ms: int) -> Exception:
    """-> :class:`Temporary` or :class:`FatalExchangeError` for one failed ccxt call.

    In order: 429/418 (rate limited, with ``Retry-After``); a temporary Binance code (-1000,
    -1001, -1003, -1006, -1007, -1008); any 5xx, with or without a JSON body; a code of a bad
    request (-1100 ... -1130, fatal for the series); then the ccxt class (:data:`CLASS_RULES`)."""
    if rec.status in (418, 429) or isinstance(exc, ccxt.DDoSProtection):
        return _rate_limited(rec)
    decided = _by_code(rec, exchange_id, exc)
    if decided is not None:
        return decided
    for cls, rule in CLASS_RULES:
        if isinstance(exc, cls):
            return rule(exc, rec, exchange_id, timeout_ms)
    return FatalExchangeError(f"{exchange_id}: {type(exc).__name__} ({short(exc)})")
