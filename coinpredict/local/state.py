"""Ingest state per series: cursor, series start, last outcome (JSON, written atomically).

The cursor is the open time of the last candle InfluxDB acknowledged; it only moves forward after
a write was acknowledged, and is repaired from InfluxDB when it is found ahead of the data.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar

from coinpredict.base.errors import ArtifactError
from coinpredict.base.redact import redact
from coinpredict.base.series import Series
from coinpredict.local import atomic
from coinpredict.local.locks import open_regular

T = TypeVar("T")


@dataclass(frozen=True)
class IngestState:
    cursor: int | None = None  # open time of the last stored candle
    series_start: int | None = None  # first candle the exchange returned
    status: str = "new"  # new | ok | failed
    last_error: str | None = None
    updated_at: int | None = None
    last_new_candles: int = 0  # candles stored by the last run

    def evolve(self, **changes: object) -> IngestState:
        return replace(self, **changes)  # type: ignore[arg-type]


def series_file(state_dir: Path, area: str, series: Series, suffix: str = ".json") -> Path:
    """A series' file in one area of the state dir: ``AREA/EXCHANGE/SYMBOL_TF.suffix``."""
    return state_dir / area / series.exchange / f"{series.stem}{suffix}"


@dataclass(frozen=True)
class StateArea(Generic[T]):
    """One kind of per-series state record: where it lives and how it loads and saves."""

    area: str
    cls: type[T]
    what: str

    def path(self, state_dir: Path, series: Series) -> Path:
        return series_file(state_dir, self.area, series)

    def load(self, state_dir: Path, series: Series) -> T:
        return _load(self.path(state_dir, series), self.cls, self.what)

    def save(self, state_dir: Path, series: Series, st: T) -> None:
        _save(self.path(state_dir, series), st)


def _load(path: Path, cls: type[T], what: str) -> T:
    """A state record; missing = the record's defaults; unreadable or invalid = ArtifactError."""
    try:
        raw = atomic.read_json(path)
    except FileNotFoundError:
        return cls()
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ArtifactError(f"{path} is not a valid {what}: {exc}") from exc


def ensure_dir(directory: Path, what: str = "") -> None:
    """mkdir -p, or ArtifactError naming the directory (``what``: e.g. "export directory")
    and the reason."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        label = f"{what} {directory}" if what else str(directory)
        raise ArtifactError(f"cannot create {label}: {exc.strerror or exc}") from exc


def _save(path: Path, st: object) -> None:
    ensure_dir(path.parent)
    atomic.write_json(path, asdict(st))  # type: ignore[call-overload]


def append_jsonl(path: Path, records: list[dict], *, keep: int | None = None) -> None:
    """Append records to a JSON-lines file; with ``keep``, rewrite atomically to the last N.
    Credentials are masked (``base.redact``)."""
    ensure_dir(path.parent)
    lines = [redact(json.dumps(r, allow_nan=False)) for r in records]
    if keep is None:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "record")
        try:
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise ArtifactError(f"cannot append to {path}: {os.strerror(exc.errno or 0)}") from exc
        return
    old = read_jsonl(path)
    kept = [json.dumps(r, allow_nan=False) for r in old] + lines
    atomic.write_text(path, "".join(line + "\n" for line in kept[-keep:]))


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (crash mid-append) is skipped. A symbolic
    link is refused (ArtifactError), never followed."""
    try:
        fd = open_regular(path, os.O_RDONLY, "record")
    except ArtifactError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return []
        raise
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class PredictState:
    """Outcome of the latest predict run of a series: the source of the ``degraded`` flag."""

    status: str = "never"  # never | ok | failed
    reason: str | None = None
    at: int | None = None  # when the run ended (ms)
    last_good_origin: int | None = None  # origin of the forecast being served
    last_new_candle: int | None = None  # the newest candle the last successful run saw

    @property
    def degraded(self) -> bool:
        return self.status == "failed"


INGEST: StateArea[IngestState] = StateArea("ingest", IngestState, "ingest state")
PREDICT: StateArea[PredictState] = StateArea("predict", PredictState, "predict state")
ingest_path, load_ingest, save_ingest = INGEST.path, INGEST.load, INGEST.save
predict_path, load_predict, save_predict = PREDICT.path, PREDICT.load, PREDICT.save
