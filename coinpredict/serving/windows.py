"""Model windows kept between predict runs (STATE_DIR/windows), so that a run reads from InfluxDB
only the candles that are new since the last one instead of the whole window (4,273 candles for
the 1h ridge: ~12 ms of InfluxDB and JSON work per series, most of predict's cost).

InfluxDB stays the source of truth. A cached window is only a copy of earlier reads, and it is
used only when

* InfluxDB still holds exactly as many candles over the part of the window it covers (one
  ``count`` query, sent in the same request as the read of the new candles): a refilled gap or
  deleted candles change the count, and the whole window is read again;
* it was last read in full less than 12-24 h ago (``FULL_READ_AFTER_MS``, spread per series): a
  candle overwritten in place with other values (same count) is picked up by that full read;
* the file loads and has the expected shape. Anything else (missing, torn, foreign) means a
  full read; the cache is never an error.

``coinpredict cycle`` exports the newest candles of the window predict has just forecast from
(``newest_rows``) instead of reading them again, so the same checks stand behind them.

Files are written atomically but without fsync: after a power loss an older file may be back,
which the checks above catch.

Format (``.win``): a 32-byte header -- the magic ``CPWIN1``, two zero bytes, then when the
window was last read in full (ms), the rows and the columns, each a little-endian int64 -- and
the candles as little-endian float64, row by row (timestamp, open, high, low, close, volume).
Loading is one read and a view of the bytes (the ``.npz`` files of earlier versions cost ~1 ms
more per series to load and to save, in a zip container; such a file is no longer read: the
series is read in full once and its old file removed).
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from coinpredict.base.errors import ArtifactError
from coinpredict.base.series import Series
from coinpredict.base.timeframes import DAY_MS
from coinpredict.local import atomic
from coinpredict.local.state import series_file
from coinpredict.store.candles import FIELDS, CandleStore, frame_of
from coinpredict.store.latest import CandleRow

log = logging.getLogger("coinpredict.serving.windows")

FULL_READ_AFTER_MS = DAY_MS
COLUMNS = ("timestamp", *FIELDS)


def _max_age_ms(series: Series) -> int:
    """Between half of and all of ``FULL_READ_AFTER_MS``, fixed per series, so that series
    whose windows were filled together (a first run) are not all read in full in one cycle."""
    spread = zlib.crc32(series.label.encode()) % (FULL_READ_AFTER_MS // 2)
    return FULL_READ_AFTER_MS - spread


MAGIC = b"CPWIN1\0\0"
_HEADER = struct.Struct("<8sqqq")  # magic, full_read_at (ms), rows, columns
_ROW = np.dtype("<f8")


def window_path(state_dir: Path, series: Series) -> Path:
    return series_file(state_dir, "windows", series, ".win")


def old_window_path(state_dir: Path, series: Series) -> Path:
    """Where versions before the ``.win`` format kept the window (an ``.npz``)."""
    return series_file(state_dir, "windows", series, ".npz")


def encode(candles: np.ndarray, full_read_at: int) -> bytes:
    """The file's bytes for ``candles`` (rows of ``COLUMNS``, float64)."""
    rows, cols = candles.shape
    return _HEADER.pack(MAGIC, full_read_at, rows, cols) + candles.astype(_ROW).tobytes()


def decode(data: bytes) -> tuple[np.ndarray, int] | None:
    """(candles, when they were last read in full), or None: not a complete window file."""
    if len(data) < _HEADER.size:
        return None
    magic, full_read_at, rows, cols = _HEADER.unpack_from(data)
    if magic != MAGIC or cols != len(COLUMNS) or rows < 0:
        return None
    if len(data) != _HEADER.size + rows * cols * _ROW.itemsize:  # torn or padded
        return None
    candles = np.frombuffer(data, dtype=_ROW, offset=_HEADER.size).reshape(rows, cols)
    return candles, full_read_at


def _load(path: Path) -> tuple[pl.DataFrame, int] | None:
    """(candles, when they were last read in full) or None when there is no usable file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, unreadable: read in full
        log.debug("ignoring the cached window %s: %s", path, exc)
        return None
    got = decode(data)
    if got is None:  # torn, empty or foreign: read in full
        log.debug("ignoring the cached window %s: not a window file", path)
        return None
    return frame_of(got[0]), got[1]


def _save(path: Path, frame: pl.DataFrame, full_read_at: int) -> None:
    data = encode(frame.select(COLUMNS).to_numpy(), full_read_at)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data, durable=False)
    except (OSError, ArtifactError) as exc:  # the next run reads in full; predict goes on
        log.warning("cannot keep the model window of %s: %s", path.stem, exc)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # e.g. the cache dir is unusable: _save says so
        log.debug("cannot remove %s: %s", path, exc)


def read_window(
    store: CandleStore, series: Series, start_ms: int, end_ms: int, state_dir: Path, now_ms: int
) -> Any:
    """The stored candles with ``start_ms <= open time <= end_ms`` (a polars frame), reading
    only the new ones when the cached window is still good; the cache is updated."""
    path = window_path(state_dir, series)
    cached = _load(path)
    frame = None
    full_read_at = now_ms
    if cached is not None and 0 <= now_ms - cached[1] < _max_age_ms(series):
        frame = store.read_extending(series, start_ms, end_ms, cached[0])
        if frame is not None:
            full_read_at = cached[1]
    if frame is None:
        frame = store.read(series, start_ms, end_ms)
        if cached is None:  # a window of an earlier version is not read again: removed
            _remove(old_window_path(state_dir, series))
    if frame.height:
        _save(path, frame, full_read_at)
    return frame


def newest_rows(frame: pl.DataFrame, n: int) -> list[CandleRow] | None:
    """The newest ``n`` candles of a window that ``read_window`` returned, as InfluxDB's candle
    reads give them (open time, then five floats), or None when the window holds fewer than
    ``n`` or one of them has a value that is not finite (a field missing in InfluxDB: the
    caller reads InfluxDB itself, which reports it). The window holds every stored candle of a
    time range that ends at the newest stored closed one, so its newest ``n`` are the series'."""
    if n <= 0 or frame.height < n:
        return None
    tail = frame.tail(n)
    values = tail.select(FIELDS).to_numpy()
    if not np.isfinite(values).all():
        return None
    stamps = tail["timestamp"].to_list()
    return [(t, *v) for t, v in zip(stamps, values.tolist(), strict=True)]
