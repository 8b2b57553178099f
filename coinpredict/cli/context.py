"""What the root callback hands to every command: raw flags, resolved to Settings on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from coinpredict.base.config import Settings, load_settings


@dataclass
class CliState:
    config_file: Path | None = None
    flags: dict[str, Any] = field(default_factory=dict)

    def settings(
        self, *, symbols: list[str] | None = None, timeframes: list[str] | None = None
    ) -> Settings:
        flags = dict(self.flags)
        if symbols:
            flags["symbols"] = list(symbols)
        if timeframes:
            flags["timeframes"] = list(timeframes)
        return load_settings(flags=flags, config_file=self.config_file)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj
