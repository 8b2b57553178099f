"""The one injectable source of "now" (integer milliseconds since the epoch, UTC)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall clock. Uses ``time.time`` so that ``faketime`` moves it in end-to-end tests."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class FixedClock:
    """A clock for tests: stands still until moved."""

    ms: int

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
