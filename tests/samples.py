"""Load the committed real-candle samples (tests/data, cut from ../shared/data)."""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).parent / "data"


def rows(name: str) -> list[tuple[int, float, float, float, float, float]]:
    with (DATA / name).open() as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in reader
        ]
