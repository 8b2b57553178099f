"""Loaded by Python started under ``faketime`` in tests (PYTHONPATH=tests/faketime_site).

libfaketime with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` breaks ``time.sleep`` (EINVAL) on Python 3.11;
faking the monotonic clock instead hangs ``Event.wait`` / ``queue.get`` with a timeout. So the
monotonic clock stays real and ``time.sleep`` becomes a ``select()`` loop on it.
"""

import select
import time

_monotonic = time.monotonic


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = _monotonic() + seconds
    while True:
        left = end - _monotonic()
        if left <= 0:
            return
        select.select([], [], [], left)


time.sleep = _sleep
