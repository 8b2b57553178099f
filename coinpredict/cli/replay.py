"""``coinpredict replay serve``: the Binance-compatible replay exchange (docs/replay.md).

Module-level imports stay light (no ccxt): the server itself is stdlib only.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from coinpredict.base.errors import ConfigError

DEFAULT_MARKETS = 3500  # about what Binance lists in exchangeInfo (spot)

replay_app = typer.Typer(
    help="A Binance-compatible spot exchange that replays candle CSV files, for tests, demos "
    "and drills (see docs/replay.md).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@replay_app.callback()
def replay_root() -> None:
    """A Binance-compatible spot exchange that replays candle CSV files, for tests, demos and
    drills (see docs/replay.md)."""


@replay_app.command("serve")
def serve(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Directory of {BASE}_{QUOTE}-{TF}.csv files (header "
            "timestamp,open,high,low,close,volume; timestamp = open time in ms UTC; TF one of "
            "1m,1h,1d,1w,1M).",
            show_default=False,
        ),
    ],
    port: Annotated[
        int,
        typer.Option("--port", help="TCP port on 127.0.0.1; 0 picks a free port."),
    ] = 0,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Freeze the replay clock at this instant (YYYY-MM-DD or ISO 8601, UTC). "
            "Default: the system clock.",
            show_default=False,
        ),
    ] = None,
    shift_to_now: Annotated[
        bool,
        typer.Option(
            "--shift-to-now",
            help="Shift each file so that it ends at the clock's now: fixed-step files "
            "(1m,1h,1d,1w) by the smallest whole number of weeks that puts their last close "
            "after now (files that end together get the same shift), 1M files by whole months "
            "to the current month; candles that land after now stay hidden until they open.",
        ),
    ] = False,
    latency: Annotated[
        float,
        typer.Option("--latency", help="Added delay before every answer, in milliseconds."),
    ] = 0.0,
    rate_limit: Annotated[
        bool,
        typer.Option(
            "--rate-limit/--no-rate-limit",
            help="Binance-like request weight limit (6000/min, klines weight 2): over it 429 "
            "with Retry-After; requests that keep coming before Retry-After earn a 418 ban.",
        ),
    ] = True,
    weight_limit: Annotated[
        int,
        typer.Option("--weight-limit", help="Request weight allowed per minute."),
    ] = 6000,
    fault_rate: Annotated[
        float,
        typer.Option(
            "--fault-rate",
            help="Probability (0..1) that a fault-eligible request gets one of --faults.",
        ),
    ] = 0.0,
    faults: Annotated[
        str,
        typer.Option(
            "--faults",
            help="Comma-separated fault kinds: 5xx (HTML body), 5xx_json (Binance body), 429, "
            "418, slow, drop, malformed, empty, object, nan, high_low, negative_volume, "
            "off_grid, future; or the groups transport, body, impossible, all.",
        ),
    ] = "all",
    fault_endpoints: Annotated[
        str,
        typer.Option(
            "--fault-endpoints",
            help="Comma-separated endpoints that faults apply to: klines, exchangeInfo, "
            "ticker24hr, time, ping.",
        ),
    ] = "klines",
    slow: Annotated[
        float,
        typer.Option("--slow", help="Seconds a 'slow' fault holds its answer back."),
    ] = 12.0,
    seed: Annotated[
        int,
        typer.Option("--seed", help="Seed of the fault generator (same seed, same faults)."),
    ] = 0,
    markets: Annotated[
        int,
        typer.Option(
            "--markets",
            help="Symbols listed in exchangeInfo, as on Binance: the data's own (TRADING), then "
            "made-up ones without candles with Binance's mix of quotes and statuses (TRADING, "
            "BREAK, HALT). 0 lists only the data's symbols.",
        ),
    ] = DEFAULT_MARKETS,
) -> None:
    """Serve candle CSV files as a Binance-compatible exchange on 127.0.0.1.

    Endpoints: /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/klines and
    /api/v3/ticker/24hr (unknown symbol: HTTP 400 {"code":-1121,"msg":"Invalid symbol."}), with
    Binance's request weights and the X-MBX-USED-WEIGHT-1m header.
    Prints the base URL on the first line of stdout (use it as COINPREDICT_EXCHANGE_URL), then
    serves until interrupted (Ctrl-C or SIGTERM). A candle is never served before its open time
    at the replay's clock; the candle open at that clock is served as Binance does.
    """
    from coinpredict.base.clock import FixedClock, SystemClock
    from coinpredict.base.timeframes import iso, parse_instant
    from coinpredict.replay import ReplayDataError, ReplayServer

    _check_numbers(port, latency, fault_rate, weight_limit, slow, markets)
    kinds, endpoints = _fault_options(faults, fault_endpoints)
    clock = FixedClock(parse_instant(now, setting="--now")) if now else SystemClock()
    try:
        server = ReplayServer(
            data,
            clock=clock,
            shift_to_now=shift_to_now,
            latency_ms=latency,
            rate_limit=rate_limit,
            weight_limit=weight_limit,
            fault_rate=fault_rate,
            faults=kinds,
            seed=seed,
            fault_endpoints=endpoints,
            slow_s=slow,
            port=port,
            markets=markets,
        )
    except ReplayDataError as e:
        raise ConfigError(f"--data: {e}") from None
    try:
        server.start()
    except OSError as e:
        raise ConfigError(f"--port: cannot listen on 127.0.0.1:{port}: {e.strerror}") from None

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(server.url, flush=True)
    series = sorted(f"{s.symbol} {s.tf}" for s in server.data.series.values())
    print(
        f"replay exchange: {len(series)} series from {data} ({', '.join(series)}), "
        f"{len(server.listing)} symbols listed; "
        f"clock {'fixed at ' + iso(clock.now_ms()) if now else 'system'}"
        + (
            "; shifted by "
            + ", ".join(sorted({s.shift_label for s in server.data.series.values()}))
            if shift_to_now
            else ""
        )
        + (
            f"; faults {fault_rate:g} of {','.join(kinds)} on {','.join(endpoints)}"
            if fault_rate
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(server.counts.items()))
        print(f"replay exchange: requests served: {counts or 'none'}", file=sys.stderr, flush=True)


def _check_numbers(
    port: int, latency: float, fault_rate: float, weight_limit: int, slow: float, markets: int
) -> None:
    if port < 0 or port > 65535:
        raise ConfigError(f"--port: {port} is not a TCP port (0-65535)")
    if latency < 0:
        raise ConfigError(f"--latency: must be >= 0 ms, got {latency:g}")
    if not 0.0 <= fault_rate <= 1.0:
        raise ConfigError(f"--fault-rate: must be between 0 and 1, got {fault_rate:g}")
    if weight_limit <= 0:
        raise ConfigError(f"--weight-limit: must be positive, got {weight_limit}")
    if slow <= 0:
        raise ConfigError(f"--slow: must be positive, got {slow:g}")
    if markets < 0:
        raise ConfigError(f"--markets: must be >= 0, got {markets}")


def _fault_options(faults: str, fault_endpoints: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from coinpredict.replay import parse_kinds
    from coinpredict.replay.server import ENDPOINTS

    try:
        kinds = parse_kinds(faults)
    except ValueError as e:
        raise ConfigError(f"--faults: {e}") from None
    endpoints = tuple(x.strip() for x in fault_endpoints.split(",") if x.strip())
    known = set(ENDPOINTS.values())
    for name in endpoints:
        if name not in known:
            raise ConfigError(
                f"--fault-endpoints: unknown endpoint {name!r} (known: {', '.join(sorted(known))})"
            )
    return kinds, endpoints
