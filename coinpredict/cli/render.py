"""Output helpers: JSON on stdout for scripts, rich tables for people; all of it redacted."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from coinpredict.base.redact import redact

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(redact(json.dumps(obj, indent=2, allow_nan=False)) + "\n")
    sys.stdout.flush()


def _table_console() -> Console:
    """The terminal itself, or a wide console when piped (logs, tests): one line per row."""
    return console if console.is_terminal else Console(width=160)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=redact(title), title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else redact(str(v)) for v in row))
    _table_console().print(t)


def line(text: str) -> None:
    """One plain line (never rich markup: alert and error texts may contain brackets)."""
    console.print(redact(text), highlight=False, soft_wrap=True, markup=False)
