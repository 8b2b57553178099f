"""Load the committed real-candle samples (tests/data, cut from ../shared/data)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parents[1] / "data"


def rows(name: str) -> list[tuple[int, float, float, float, float, float]]:
    with (DATA / name).open() as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in reader
        ]


def load(name: str) -> pl.DataFrame:
    """A committed sample (``BTC_USDT-1h`` etc.) as the candle frame the models take."""
    return pl.read_csv(
        DATA / f"{name}.csv",
        schema_overrides={
            "timestamp": pl.Int64,
            **{c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
        },
    )
