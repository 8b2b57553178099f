"""Progress for long work: a rich bar on a terminal, periodic plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from coinpredict.base.series import Series

if TYPE_CHECKING:
    from coinpredict.ingest.ingest import Progress

log = logging.getLogger("coinpredict.progress")


@contextmanager
def series_progress(verb: str) -> Iterator[Progress]:
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        from coinpredict.cli.render import err_console

        bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[pages]} pages"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        tasks: dict[Series, TaskID] = {}
        lock = threading.Lock()

        def update(series: Series, stored: int, pages: int, expected: int | None) -> None:
            with lock:
                if series not in tasks:
                    tasks[series] = bar.add_task(f"{verb} {series}", total=expected, pages=0)
                bar.update(tasks[series], completed=stored, pages=pages)

        with bar:
            yield update
        return

    last: dict[Series, float] = {}
    started = time.monotonic()

    def log_update(series: Series, stored: int, pages: int, expected: int | None) -> None:
        now = time.monotonic()
        if now - last.get(series, 0.0) >= 5.0:
            last[series] = now
            rate = stored / max(now - started, 1e-6)
            log.info(
                "%s %s: %d/%s candles, %d pages, %.0f candles/s",
                verb,
                series,
                stored,
                expected if expected is not None else "?",
                pages,
                rate,
            )

    yield log_update
