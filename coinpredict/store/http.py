"""A small HTTP client for InfluxDB's v1-compatible ``/write``, ``/query`` and ``/ping``.

Errors become :class:`StoreError` / :class:`StoreUnavailableError` with one clear line that
names the server by its URL without credentials. Userinfo in the URL (``http://user:pw@host``)
is sent as HTTP Basic auth when no token or username/password is given, and never kept in
``url``. One keep-alive connection per thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from coinpredict.base import redact
from coinpredict.base.errors import StoreError, StoreUnavailableError


class InfluxHTTP:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        url, url_user, url_password = redact.split_userinfo(url)
        redact.register(url_password)
        if username is None and password is None:
            username, password = url_user, url_password
        parts = urlsplit(url)
        self.url = redact.redact(url.rstrip("/"))  # secret query parameters too
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 8086)
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout_s
        self._local = threading.local()
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username is not None or password is not None:
            raw = f"{username or ''}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    # --- transport --------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        target = f"{self._prefix}{path}?{urlencode(params)}" if params else self._prefix + path
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()  # a stale keep-alive connection: reconnect once
                if attempt == 2:
                    raise StoreUnavailableError(
                        f"InfluxDB at {self.url} dropped the connection: {exc}"
                    ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise StoreUnavailableError(
                    f"InfluxDB at {self.url} is unreachable: {reason}"
                ) from exc
        raise AssertionError("unreachable")

    # --- API --------------------------------------------------------------------------
    def ping(self) -> str:
        """Return the server version (``X-Influxdb-Version``)."""
        status, headers, _ = self.request("GET", "/ping", {})
        if status not in (200, 204):
            raise StoreError(f"InfluxDB at {self.url} answered /ping with HTTP {status}")
        return headers.get("x-influxdb-version", "unknown")

    def write(self, db: str, lines: bytes, *, rp: str | None = None) -> None:
        params = {"db": db, "precision": "ms"}
        if rp:
            params["rp"] = rp
        status, _, data = self.request("POST", "/write", params, lines)
        if status == 204 or status == 200:
            return
        raise self._error(status, data, db, "write")

    def query(self, q: str, *, db: str | None = None, write: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; return the list of ``series`` objects of every statement."""
        return [s for r in self.query_results(q, db=db, write=write) for s in r.get("series", [])]

    def query_results(
        self, q: str, *, db: str | None = None, write: bool = False
    ) -> list[dict[str, Any]]:
        params = {"q": q, "epoch": "ms", "chunked": "true", "chunk_size": "20000"}
        if db:
            params["db"] = db
        status, _, data = self.request("POST" if write else "GET", "/query", params)
        if status != 200:
            raise self._error(status, data, db, "query")
        merged: dict[int, dict[str, Any]] = {}
        for doc in _json_documents(data):
            if "error" in doc:
                raise StoreError(f"InfluxDB query failed: {doc['error']}")
            for result in doc.get("results", []):
                if "error" in result:
                    raise StoreError(f"InfluxDB query failed: {result['error']}")
                slot = merged.setdefault(result.get("statement_id", 0), {"series": []})
                _merge_series(slot["series"], result.get("series", []))
        return [merged[k] for k in sorted(merged)]

    def _error(self, status: int, data: bytes, db: str | None, what: str) -> StoreError:
        try:
            message = str(json.loads(data).get("error", ""))
        except (ValueError, AttributeError):
            message = data.decode("utf-8", "replace").strip()
        message = redact.redact(message[:300])
        if status in (401, 403):
            return StoreError(
                f"InfluxDB at {self.url} refused the credentials (HTTP {status}): {message}"
            )
        if status == 404 or "database not found" in message:
            return StoreError(
                f"InfluxDB database {db!r} does not exist at {self.url} "
                f"(run `coinpredict init`): {message}"
            )
        if status == 400 and what == "write":
            return StoreError(f"InfluxDB refused part of a write (HTTP 400): {message}")
        return StoreError(f"InfluxDB {what} failed (HTTP {status}): {message}")


def _json_documents(data: bytes) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    text = data.decode("utf-8")
    pos, end = 0, len(text)
    while pos < end:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except ValueError as exc:
            raise StoreError(f"InfluxDB returned malformed JSON: {exc}") from exc
        yield doc


def _merge_series(into: list[dict[str, Any]], more: list[dict[str, Any]]) -> None:
    """Chunked responses split one series over several documents: join them back (linear)."""
    index = {_series_key(series): series for series in into}
    for series in more:
        key = _series_key(series)
        existing = index.get(key)
        if existing is None:
            existing = {**series, "values": list(series.get("values", []))}
            index[key] = existing
            into.append(existing)
        else:
            existing["values"].extend(series.get("values", []))


def _series_key(series: dict[str, Any]) -> tuple[Any, ...]:
    tags = series.get("tags") or {}
    return (series.get("name"), tuple(sorted(tags.items())))
