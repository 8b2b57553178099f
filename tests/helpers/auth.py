"""A real influxd 1.x that requires authentication (``auth-enabled = true``), with an admin user
created through its HTTP API, and a webhook receiver that records what it was sent."""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from coinpredict.replay.influxd import InfluxProcess, start_influxd

ADMIN = "admin"
ADMIN_PASSWORD = "Adm1n-Pw_7fq2"  # distinctive: a grep finds any copy of it
READER = "reader"
READER_PASSWORD = "R3ader-Pw_9xk4"

__all__ = ["auth_env", "auth_influxd", "hook"]

_counter = itertools.count()


def influx_query(url: str, statement: str, auth: str | None = None) -> tuple[int, str]:
    """POST one InfluxQL statement; (HTTP status, body)."""
    req = urllib.request.Request(
        f"{url}/query?{urllib.parse.urlencode({'q': statement})}", method="POST"
    )
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class AuthInflux:
    process: InfluxProcess

    @property
    def url(self) -> str:
        return self.process.url

    def url_as(self, user: str, password: str) -> str:
        host = self.url.split("://", 1)[1]
        return f"http://{user}:{urllib.parse.quote(password, safe='')}@{host}"

    def admin(self, statement: str) -> None:
        status, body = influx_query(self.url, statement, f"{ADMIN}:{ADMIN_PASSWORD}")
        assert status == 200 and '"error"' not in body, body


@pytest.fixture(scope="session")
def auth_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthInflux]:
    proc = start_influxd(tmp_path_factory.mktemp("influxd-auth"), auth=True)
    try:
        status, body = influx_query(
            proc.url, f"CREATE USER {ADMIN} WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES"
        )
        assert status == 200, body
        handle = AuthInflux(proc)
        handle.admin(f"CREATE USER {READER} WITH PASSWORD '{READER_PASSWORD}'")
        yield handle
    finally:
        proc.stop()


@pytest.fixture
def auth_env(auth_influxd: AuthInflux, tmp_path) -> dict[str, str]:
    """Environment for a CLI run: admin credentials as URL userinfo, fresh databases."""
    n = next(_counter)
    return {
        "COINPREDICT_INFLUX_URL": auth_influxd.url_as(ADMIN, ADMIN_PASSWORD),
        "COINPREDICT_INFLUX_DB": f"a{n}",
        "COINPREDICT_INFLUX_DB_1M": f"a{n}_1m",
        "COINPREDICT_STATE_DIR": str(tmp_path / "state"),
        "COINPREDICT_EXPORT_DIR": str(tmp_path / "www"),
        "COINPREDICT_CONFIG": "",
    }


class Hook:
    """A tiny webhook server on 127.0.0.1: records each POST's body and Authorization header."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.auth.append(self.headers.get("Authorization"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def payloads(self) -> list[dict]:
        return [json.loads(b) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()
