"""Real file-system faults for tests (bench/faultfs.py): a full tmpfs, an ext4 on a full tmpfs,
a directory tree ``nobody`` can traverse. ``real_or_skip`` skips a test only when this machine
cannot make the fault (not root, no loop devices), and says why."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from faultfs import *  # noqa: E402, F403  (the fault makers, re-exported)
from faultfs import Missing  # noqa: E402


@contextlib.contextmanager
def real_or_skip(faulty: Any) -> Iterator[Any]:
    try:
        value = faulty.__enter__()
    except Missing as exc:
        pytest.skip(str(exc))
    try:
        yield value
    finally:
        faulty.__exit__(None, None, None)
