"""Helpers shared by the publishing/health tests (real influxd; no exchange needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import Settings, load_settings
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, parse_instant
from coinpredict.store.candles import CandleStore
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import PredictionStore, StoredForecast
from coinpredict.store.setup import init_storage

ROOT = Path(__file__).resolve().parents[2]
T0 = parse_instant("2024-01-01T10:02:00Z", setting="test")
H = 3_600_000
M = 60_000
H1 = TIMEFRAMES["1h"]
M1 = TIMEFRAMES["1m"]
D1 = TIMEFRAMES["1d"]


class World:
    """One fresh pair of databases + state/export dirs, and writers for scenarios."""

    def __init__(self, env: dict[str, str], http: InfluxHTTP, **overrides: str) -> None:
        self.env = {**env, **overrides}
        self.http = http
        self.settings: Settings = load_settings(environ=self.env)
        init_storage(self.settings, http)
        self.candles = CandleStore(
            http, db=self.settings.influx_db, db_1m=self.settings.influx_db_1m
        )
        self.predictions = PredictionStore(http, db=self.settings.influx_db)
        self.clock = FixedClock(T0)

    def reload(self, **overrides: str) -> Settings:
        self.env.update(overrides)
        self.settings = load_settings(environ=self.env)
        return self.settings

    def series(self, symbol: str = "BTC/USDT", tf: str = "1h") -> Series:
        return Series(self.settings.exchange, symbol, TIMEFRAMES[tf])

    def write_candles(self, s: Series, last_open: int, n: int = 30, price: float = 100.0) -> None:
        tf = s.timeframe
        rows = []
        for i in range(n):
            t = tf.add(last_open, -(n - 1 - i))
            p = price + i
            rows.append((t, p, p + 2.0, p - 2.0, p + 1.0, 10.0 + i))
        self.candles.write(s, rows)

    def forecast(
        self,
        s: Series,
        last_closed: int,
        *,
        horizon: int = 3,
        issued_at: int | None = None,
        close: float = 150.0,
        version: str = "v1",
        role: str = "champion",
    ) -> StoredForecast:
        tf = s.timeframe
        ts = tuple(tf.add(last_closed, i + 1) for i in range(horizon))
        closes = tuple(close + i for i in range(horizon))
        fc = StoredForecast(
            series=s,
            role=role,
            model_name="naive",
            model_version=version,
            level=0.8,
            last_closed_ms=last_closed,
            origin_ms=ts[0],
            issued_at_ms=issued_at if issued_at is not None else tf.close_time(last_closed),
            timestamps=ts,
            close=closes,
            lower=tuple(c - 5.0 for c in closes),
            upper=tuple(c + 5.0 for c in closes),
            lower_95=tuple(c - 9.0 for c in closes),
            upper_95=tuple(c + 9.0 for c in closes),
        )
        self.predictions.write(fc)
        return fc

    def up_to_date(self, s: Series, now_ms: int, **kw) -> None:
        """Candles and a forecast as fresh as they can be at ``now_ms``."""
        last = s.timeframe.last_closed_open(now_ms)
        self.write_candles(s, last)
        if s.timeframe.code != "1m":
            self.forecast(s, last, **kw)


@pytest.fixture
def world(settings_env, influx_http) -> World:
    return World(settings_env, influx_http)


def run_cli(args, env, *, faketime: str | None = None, timeout=60, **kw):
    """Run ``python -m coinpredict`` in a subprocess (optionally under faketime)."""
    full = {**os.environ, **env, "COINPREDICT_CONFIG": ""}
    cmd = [sys.executable, "-m", "coinpredict", *args]
    if faketime is not None:
        site = str(ROOT / "tests" / "faketime_site")
        full["PYTHONPATH"] = os.pathsep.join(
            [site, str(ROOT)] + ([full["PYTHONPATH"]] if full.get("PYTHONPATH") else [])
        )
        full["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        cmd = ["faketime", faketime, *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=full, cwd=ROOT, timeout=timeout, **kw
    )


class Receiver:
    """A local webhook receiver (stdlib HTTP server on 127.0.0.1) that records JSON POSTs."""

    def __init__(self, fail: bool = False) -> None:
        import http.server
        import threading

        self.posts: list[dict] = []
        self.fail = fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def take(self) -> list[dict]:
        got, self.posts = self.posts, []
        return got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
