"""The replay's candle store: ``DIR/{BASE}_{QUOTE}-{TF}.csv`` files, optionally shifted in time.

Values are kept as the CSV text, so that what the replay serves is byte-for-byte what the file says
(and a client parsing it gets the same float64 the file was written from). A series keeps its
file's text as one string and each candle's open time and line offsets in int64 arrays (~80 bytes
per candle: 180 days of 1m is ~21 MB), and splits a line only when it is served; a list of
tuples of strings took ~520 bytes per candle, so that 200 symbols of 180 days of 1m needed more
than the 24 GB of the machine they were tried on.

Shift rule (``shift_to_now``), applied once when the data is loaded, file by file:

* a fixed-step file (``1m``, ``1h``, ``1d``, ``1w``) is shifted by a whole number of weeks ``k``,
  the smallest one that puts the close time of its last candle after "now":
  ``k = floor((now - last_close) / 1 week) + 1``. A whole week keeps every grid aligned (1 m, 1 h
  and 1 d divide a week, and Monday stays Monday). ``k`` depends only on where the file ends, so
  files that end at the same instant (the 1 h and 1 d files of a pair, or all pairs of one
  download) get the same shift and stay consistent with each other (the 1 h candles of a day
  still aggregate to its 1 d candle).
* a short ``1m``/``1h``/``1d`` sample (less than two weeks of candles) is shifted by whole days
  instead, by the same rule, so that whatever the weekday at most a day of it lies after "now"
  and the rest stays visible.
* a ``1M`` file is shifted by whole calendar months so that its last candle is the month open at
  "now" (months differ in length, so this cannot be a whole number of weeks).

After the shift, each file's last candle is the candle open at "now" or lies less than a week
after it; candles that land after "now" are hidden by the clock until they open (the last served
candle is the one open at "now", the one before it the last closed candle). Less than a week of
the newest data of a fixed-step file is hidden that way.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES, WEEK_MS, Timeframe, _month_index

FILE_RE = re.compile(r"^([A-Z0-9]{1,20})_([A-Z0-9]{1,20})-(1m|1h|1d|1w|1M)\.csv$")
HEADER = "timestamp,open,high,low,close,volume"
DAY_ALIGNED = ("1m", "1h", "1d")  # timeframes whose grid a whole-day shift keeps


class ReplayDataError(ValueError):
    """A file in the data directory cannot be served."""


Row = tuple[str, str, str, str, str]


class Rows(Sequence[Row]):
    """A file's candle values (open, high, low, close, volume) as text, split on access from
    the file's text and the offset of each line's values."""

    def __init__(self, text: str, starts: array[int], ends: array[int]) -> None:
        self._text, self._starts, self._ends = text, starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, i: int) -> Row: ...
    @overload
    def __getitem__(self, i: slice) -> list[Row]: ...
    def __getitem__(self, i: int | slice) -> Row | list[Row]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        o, h, lo, c, v = self._text[self._starts[i] : self._ends[i]].split(",")
        return o, h, lo, c, v

    def __iter__(self) -> Iterator[Row]:
        return (self[k] for k in range(len(self)))


@dataclass
class Series:
    base: str
    quote: str
    tf: Timeframe
    ts: array[int]  # int64 open times, ascending
    rows: Rows
    shift_ms: int = 0
    shift_label: str = "0 weeks"

    @property
    def market_id(self) -> str:
        return self.base + self.quote

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"

    def visible_end(self, now_ms: int) -> int:
        """Index after the last candle that has opened at ``now_ms``."""
        return bisect.bisect_right(self.ts, now_ms)

    def shift_by(self, delta: int) -> None:
        if delta:
            self.ts = array("q", [t + delta for t in self.ts])
            self.shift_ms += delta

    def shift_months(self, m: int) -> None:
        if m:
            tf = self.tf
            self.ts = array("q", [tf.add(t, m) for t in self.ts])


@dataclass
class ReplayData:
    """Every series of a data directory, indexed by Binance market id and interval."""

    directory: Path
    series: dict[tuple[str, str], Series] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | Path) -> ReplayData:
        root = Path(directory)
        if not root.is_dir():
            raise ReplayDataError(f"replay data directory {str(root)!r} does not exist")
        data = cls(root)
        for path in sorted(root.iterdir()):
            m = FILE_RE.match(path.name)
            if not m:
                continue
            base, quote, code = m.groups()
            data.series[(base + quote, code)] = _read(path, base, quote, TIMEFRAMES[code])
        if not data.series:
            raise ReplayDataError(
                f"no candle files (BASE_QUOTE-TF.csv) in replay data directory {str(root)!r}"
            )
        return data

    def shift_to(self, now_ms: int) -> None:
        """Apply the shift rule of the module docstring for the instant ``now_ms``."""
        for s in self.series.values():
            if not s.ts:
                continue
            if s.tf.is_monthly:
                m = _month_index(s.tf.floor(now_ms)) - _month_index(s.ts[-1])
                s.shift_months(m)
                s.shift_label = f"{m} months"
            else:
                short = s.tf.code in DAY_ALIGNED and s.ts[-1] - s.ts[0] < 2 * WEEK_MS
                unit, name = (DAY_MS, "days") if short else (WEEK_MS, "weeks")
                k = (now_ms - s.tf.close_time(s.ts[-1])) // unit + 1
                s.shift_by(k * unit)
                s.shift_label = f"{k} {name}"

    @property
    def week_shift(self) -> int:
        """The shift of the fixed-step files in weeks, when they all share one (raises
        ValueError when they differ: then use ``series[...].shift_ms``)."""
        shifts = {s.shift_ms for s in self.series.values() if not s.tf.is_monthly}
        if len(shifts) > 1:
            raise ValueError("the fixed-step files are shifted by different numbers of weeks")
        return (shifts.pop() if shifts else 0) // WEEK_MS

    def markets(self) -> dict[str, tuple[str, str]]:
        """Market id -> (base, quote) of every symbol that has at least one file."""
        return {s.market_id: (s.base, s.quote) for s in self.series.values()}

    def get(self, market_id: str, interval: str) -> Series | None:
        return self.series.get((market_id, interval))


def _read(path: Path, base: str, quote: str, tf: Timeframe) -> Series:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[0].rstrip("\r").strip() != HEADER:
        raise ReplayDataError(f"{path.name}: header must be {HEADER!r}")
    ts, starts, ends = array("q"), array("q"), array("q")
    kept: list[str] = []
    pos = 0  # offset of the current line in the joined text of the kept lines
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.count(",") != 5:
            raise ReplayDataError(f"{path.name}:{number}: expected 6 columns")
        comma = line.index(",")
        try:
            t = int(line[:comma])
        except ValueError:
            raise ReplayDataError(f"{path.name}:{number}: timestamp is not an integer") from None
        if ts and t <= ts[-1]:
            raise ReplayDataError(f"{path.name}:{number}: timestamps must be strictly ascending")
        ts.append(t)
        starts.append(pos + comma + 1)
        ends.append(pos + len(line))
        kept.append(line)
        pos += len(line) + 1
    return Series(base, quote, tf, ts, Rows("\n".join(kept), starts, ends))


# --- the market list (exchangeInfo) ------------------------------------------------------------
# Binance lists ~3,500 spot symbols, most of them no longer trading (status BREAK); a few are
# halted. The synthetic part of the list has Binance's mix of quotes and statuses.
STATUS_MIX = (("TRADING", 45), ("BREAK", 54), ("HALT", 1))  # per 100 synthetic symbols
QUOTE_MIX = (
    ("USDT", 34),
    ("BTC", 16),
    ("USDC", 10),
    ("FDUSD", 8),
    ("BNB", 8),
    ("TRY", 8),
    ("ETH", 6),
    ("EUR", 5),
    ("BRL", 3),
    ("JPY", 2),
)
_CONSONANTS = "BCDFGHKLMNPRSTVZ"
_VOWELS = "AEIOU"


@dataclass(frozen=True)
class Listing:
    """One symbol of the replay's ``exchangeInfo``."""

    market_id: str
    base: str
    quote: str
    status: str = "TRADING"
    has_data: bool = False


def _weighted(mix: tuple[tuple[str, int], ...], i: int) -> str:
    total = sum(w for _, w in mix)
    k = (i * 37) % total  # a fixed stride spreads the kinds evenly over the list
    for name, weight in mix:
        if k < weight:
            return name
        k -= weight
    return mix[-1][0]


def _base_name(i: int) -> str:
    """A made-up asset name, unique per ``i`` (``BAKO``, ``BAKE2`` ...)."""
    c, v = len(_CONSONANTS), len(_VOWELS)
    syllables = []
    n = i
    for _ in range(2):
        syllables.append(_CONSONANTS[n % c] + _VOWELS[(n // c) % v])
        n //= c * v
    return "".join(syllables) + (str(n + 1) if n else "")


def listings(data_markets: dict[str, tuple[str, str]], total: int) -> dict[str, Listing]:
    """The data's own markets (TRADING) plus synthetic ones up to ``total`` symbols."""
    out = {
        mid: Listing(mid, base, quote, "TRADING", True)
        for mid, (base, quote) in sorted(data_markets.items())
    }
    used_assets = {a for pair in data_markets.values() for a in pair}
    i = 0
    while len(out) < total:
        base = _base_name(i)
        quote = _weighted(QUOTE_MIX, i)
        i += 1
        if base in used_assets or base + quote in out:
            continue
        out[base + quote] = Listing(base + quote, base, quote, _weighted(STATUS_MIX, i))
    return out


def market_info(item: Listing) -> dict[str, object]:
    """One ``exchangeInfo`` symbol with Binance's fields and filter structure."""
    trading = item.status == "TRADING"
    groups = [f"TRD_GRP_{k:03d}" for k in range(4, 40)] if trading else []
    return {
        "symbol": item.market_id,
        "status": item.status,
        "baseAsset": item.base,
        "baseAssetPrecision": 8,
        "quoteAsset": item.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": trading,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.00000001",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.00000001",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00000001",
                "maxQty": "9000000.00000000",
                "stepSize": "0.00000001",
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN", *groups]] if trading else [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
