"""Named crash points: the moments on the write paths where a drill stops the process exactly.

A write path calls ``crash_point("NAME")`` (or ``crash_point("NAME", detail)``) at a dangerous
moment, e.g. after InfluxDB acknowledged a candle batch and before the cursor is saved. With the
environment variables below unset, a point costs one global lookup and a test. docs/reliability.md
lists every point beside the state it leaves behind; bench/drills.py kills the CLI at each.

``COINPREDICT_CRASH_AT=NAME[:DETAIL][@N]``
    The N-th time (default: the first) the process passes the point NAME (and, when DETAIL is
    given, only passes whose detail equals it, e.g. the file name at ``atomic.before_rename``),
    it appends ``stop NAME DETAIL PID`` to the crash log (stderr when no log is set) and stops
    itself with SIGSTOP, sent to the thread at the point so that this thread halts before its
    next instruction (the others halt a moment later). The drill then sends SIGKILL (a crash at that
    moment) or SIGCONT (the run goes on, e.g. after the drill stopped InfluxDB).
``COINPREDICT_CRASH_LOG=PATH``
    Append ``pass NAME DETAIL`` to PATH for every point passed, so that a kill at a random instant
    can tell the last point the run reached (its phase).
``COINPREDICT_TEST_DEFECT=NAME``
    Test-only. Plants a known defect so that a test can show the drills catch it; never set it
    outside a drill. ``cursor_before_ack``: ingest saves a batch's cursor before writing the batch
    (the drill sees the cursor ahead of the data).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

CRASH_AT = "COINPREDICT_CRASH_AT"
CRASH_LOG = "COINPREDICT_CRASH_LOG"
TEST_DEFECT = "COINPREDICT_TEST_DEFECT"

#: Every named point and the state a crash there leaves behind (docs/reliability.md says more).
POINTS: dict[str, str] = {
    "ingest.batch_stored": "a candle batch is in InfluxDB, the cursor still names the batch before",
    "atomic.before_rename": "the new content is fsynced in a dot temp file, the target is the old",
    "export.file_replaced": "one export file is new, the others and the manifest are the old",
    "registry.replace": "a new model version is on disk, registry.json still the old",
    "cycle.ingest_done": "cycle: ingest finished (its run recorded), predict and export not yet",
    "cycle.before_export": "cycle: ingest and predict finished, export not started",
}
#: Test-only defects -> the crash point a drill aims at to catch each.
DEFECTS: dict[str, str] = {"cursor_before_ack": "ingest.batch_stored"}


def _target(spec: str | None) -> tuple[str, str | None, int] | None:
    if not spec:
        return None
    where, _, nth = spec.partition("@")
    name, _, detail = where.partition(":")
    return name, detail or None, int(nth or 1)


_TARGET = _target(os.environ.get(CRASH_AT))
_LOG = os.environ.get(CRASH_LOG) or None
_DEFECT = os.environ.get(TEST_DEFECT) or None
_ACTIVE = _TARGET is not None or _LOG is not None
_hits = 0
_hits_lock = threading.Lock()


def crash_point(name: str, detail: str = "") -> None:
    """A named moment on a write path (a no-op unless a drill asked for it)."""
    if _ACTIVE:
        _reached(name, detail)


def if_planted(defect: str, action: Callable[..., object], *args: object) -> None:
    """Test-only: when a drill planted ``defect`` (COINPREDICT_TEST_DEFECT), do ``action(*args)``
    and pass the crash point where the defect shows; else nothing."""
    if _DEFECT is not None and _DEFECT == defect:
        action(*args)
        crash_point(DEFECTS[defect])


def _note(line: str) -> None:
    if _LOG is None:
        os.write(sys.stderr.fileno(), line.encode())
        return
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _reached(name: str, detail: str) -> None:
    global _hits
    where = f"{name} {detail}".rstrip()
    if _LOG is not None:
        _note(f"pass {where}\n")
    t = _TARGET
    if t is None or name != t[0] or (t[1] is not None and detail != t[1]):
        return
    with _hits_lock:
        _hits += 1
        hit = _hits
    if hit == t[2]:
        _note(f"stop {where} {os.getpid()}\n")
        # Sent to this thread, not to the process: a process-wide SIGSTOP is taken by the main
        # thread, and until that thread gets the CPU this one runs on past the point (under
        # load long enough to send its batch). A stop signal to one thread still stops them all.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)  # SIGKILL ends, SIGCONT resumes
