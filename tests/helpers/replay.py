"""Replay-exchange fixtures (see tests/test_replay.py, tests/test_exchange.py).

* ``replay_server(data_dir=tests/data, *, now_ms=REPLAY_NOW_MS, clock=None, **options)`` starts an
  in-process :class:`ReplayServer` on a free port with a :class:`FixedClock` (``server.clock``) and
  stops it after the test. ``options`` are ReplayServer's (``latency_ms``, ``fault_rate``,
  ``faults``, ``seed``, ``shift_to_now``, ``weight_limit``, ``slow_s`` ...).
* ``replay_adapter(server, **options)`` builds an :class:`ExchangeAdapter` on that server sharing
  its clock, with no request spacing (``rate_limit_ms=0``) and a recording sleep: the delays the
  adapter asked to sleep are in ``adapter.test_sleeps`` (nothing really sleeps).
* ``replay_data(tmp_path)`` -> a function ``(*names, extra=None) -> Path`` that copies sample files
  into a fresh directory (and writes ``extra`` = {file name: CSV text}).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coinpredict.base.clock import FixedClock
from coinpredict.replay import ReplayServer

__all__ = [
    "REPLAY_DATA_DIR",
    "REPLAY_NOW_MS",
    "read_csv_candles",
    "replay_adapter",
    "replay_data",
    "replay_server",
]

REPLAY_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
# 2019-06-01T00:30:00Z: the BTC 1h sample's last candle (2019-05-31T23:00Z) is the last closed one.
REPLAY_NOW_MS = 1_559_349_000_000


def read_csv_candles(path: Path) -> list[tuple[int, float, float, float, float, float]]:
    """The rows of a candle CSV as (ts, open, high, low, close, volume) with Python floats."""
    out = []
    for line in path.read_text().splitlines()[1:]:
        t, o, h, lo, c, v = line.split(",")
        out.append((int(t), float(o), float(h), float(lo), float(c), float(v)))
    return out


@pytest.fixture
def replay_server() -> Iterator[Callable[..., ReplayServer]]:
    started: list[ReplayServer] = []

    def start(
        data_dir: str | Path = REPLAY_DATA_DIR,
        *,
        now_ms: int = REPLAY_NOW_MS,
        clock: Any = None,
        **options: Any,
    ) -> ReplayServer:
        server = ReplayServer(data_dir, clock=clock or FixedClock(now_ms), **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def replay_adapter() -> Iterator[Callable[..., Any]]:
    from coinpredict.exchange import ExchangeAdapter

    made: list[Any] = []

    def make(
        server: ReplayServer | None = None, *, base_url: str | None = None, **options: Any
    ) -> Any:
        sleeps: list[float] = []
        options.setdefault("rate_limit_ms", 0)
        options.setdefault("timeout_ms", 2000)
        options.setdefault("sleep", sleeps.append)
        if "clock" not in options:
            options["clock"] = server.clock if server is not None else FixedClock(REPLAY_NOW_MS)
        url = base_url if base_url is not None else (server.url if server is not None else None)
        adapter = ExchangeAdapter("binance", url, **options)
        adapter.test_sleeps = sleeps
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def replay_data(tmp_path: Path) -> Callable[..., Path]:
    def build(*names: str, extra: dict[str, str] | None = None) -> Path:
        root = tmp_path / "replay-data"
        root.mkdir(exist_ok=True)
        for name in names:
            shutil.copy(REPLAY_DATA_DIR / name, root / name)
        for name, text in (extra or {}).items():
            (root / name).write_text(text)
        return root

    return build
