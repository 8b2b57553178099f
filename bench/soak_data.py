"""Replay data for the soak (bench/soak.py): one series of its own per symbol.

Every long symbol gets scaled copies of a real 1h and 1d file (the sources taken in turn, prices
times 1 + 1.3 % x its index, volumes unchanged) and of BTC's 1w and 1M files; the first
``fast`` symbols also get a 1m file of ``days`` days built by chaining copies of the real 1m
files end to end (each copy rescaled so that it opens at the previous copy's last close).

Every file is moved in time here, not by the replay (no ``--shift-to-now``): fixed-step files by
whole weeks (a grid and the weekday stay aligned), 1M by whole months, so that the newest candle
opens after ``end_ms``; the replay's clock hides every candle that has not opened yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from common import read_rows

MIN_MS = 60_000
WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True)
class Universe:
    long: list[str]  # base names at 1h/1d/1w/1M
    fast: list[str]  # base names at 1m (the first of ``long``)

    def symbols(self, bases: list[str]) -> str:
        return ",".join(f"{b}/USDT" for b in bases)


def _bases(source: Path, tf: str) -> list[str]:
    found = sorted(p.name.split("_")[0] for p in source.glob(f"*_USDT-{tf}.csv"))
    first = [b for b in ("BTC", "ETH") if b in found]
    return first + [b for b in found if b not in first]


def names(source: Path, n: int) -> list[tuple[str, str]]:
    """(new base name, source base) for ``n`` symbols: the real names first, then BTC1, ETH1..."""
    srcs = _bases(source, "1h")
    out = []
    for i in range(n):
        src = srcs[i % len(srcs)]
        k = i // len(srcs)
        out.append((src if k == 0 else f"{src}{k}", src))
    return out


def _write(path: Path, rows: list[tuple[int, float, float, float, float, float]]) -> None:
    with path.open("w") as handle:
        handle.write("timestamp,open,high,low,close,volume\n")
        handle.writelines(f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r}\n" for t, o, h, lo, c, v in rows)


def _scaled(rows: list, factor: float, shift_ms: int) -> list:
    return [
        (t + shift_ms, o * factor, h * factor, lo * factor, c * factor, v)
        for t, o, h, lo, c, v in rows
    ]


def _week_shift(last_ts: int, end_ms: int) -> int:
    return max(0, -(-(end_ms - last_ts) // WEEK_MS)) * WEEK_MS


def _month_shift(rows: list, end_ms: int) -> list:
    def index(ms: int) -> int:
        d = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        return d.year * 12 + d.month - 1

    months = index(end_ms) - index(rows[-1][0])

    def moved(ms: int) -> int:
        i = index(ms) + months
        return int(dt.datetime(i // 12, i % 12 + 1, 1, tzinfo=dt.UTC).timestamp() * 1000)

    return [(moved(r[0]), *r[1:]) for r in rows]


def _minute_rows(sources: list[list], start_ms: int, count: int, factor: float) -> list:
    """``count`` 1m candles from ``start_ms`` on: the source files chained end to end."""
    out: list = []
    level = factor
    i = 0
    while len(out) < count:
        src = sources[i % len(sources)]
        i += 1
        if out:
            level = out[-1][4] / src[0][1]
        for _t, o, h, lo, c, v in src[: count - len(out)]:
            out.append(
                (start_ms + len(out) * MIN_MS, o * level, h * level, lo * level, c * level, v)
            )
    return out


def build(
    source: Path, target: Path, *, long: int, fast: int, days: int, start_ms: int, end_ms: int
) -> Universe:
    """Write the replay files for ``long`` symbols (``fast`` of them with 1m) into ``target``.
    ``start_ms``: the earliest instant the soak's clock shows (1m data begins ``days`` before
    it); ``end_ms``: the last instant it reaches."""
    target.mkdir(parents=True, exist_ok=True)
    pairs = names(source, long)
    btc = {tf: read_rows(source / f"BTC_USDT-{tf}.csv") for tf in ("1w", "1M")}
    cache: dict[str, list] = {}
    for i, (name, src) in enumerate(pairs):
        factor = 1.0 + 0.013 * i
        for tf in ("1h", "1d"):
            rows = cache.setdefault(f"{src}-{tf}", read_rows(source / f"{src}_USDT-{tf}.csv"))
            shift = _week_shift(rows[-1][0], end_ms)
            _write(target / f"{name}_USDT-{tf}.csv", _scaled(rows, factor, shift))
        weekly = btc["1w"]
        _write(
            target / f"{name}_USDT-1w.csv",
            _scaled(weekly, factor, _week_shift(weekly[-1][0], end_ms)),
        )
        _write(target / f"{name}_USDT-1M.csv", _month_shift(_scaled(btc["1M"], factor, 0), end_ms))
    minutes = [read_rows(p) for p in sorted(source.glob("*_USDT-1m.csv"))]
    first = (start_ms // MIN_MS) * MIN_MS - days * 1440 * MIN_MS
    count = (end_ms - first) // MIN_MS + 60
    for i, (name, _src) in enumerate(pairs[:fast]):
        rows = _minute_rows(
            minutes[i % len(minutes) :] + minutes[: i % len(minutes)], first, count, 1.0 + 0.013 * i
        )
        _write(target / f"{name}_USDT-1m.csv", rows)
    return Universe([p[0] for p in pairs], [p[0] for p in pairs[:fast]])
