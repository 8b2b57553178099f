"""A named crash point stops the thread that reached it before that thread does anything more.

A worker thread (as ingest's series workers are) passes a crash point and then writes a marker
file. While the process is stopped there, the marker must not exist: a drill kills it at that
moment and checks the state the point promises ("the batch is in InfluxDB, the cursor is not").

To make a late stop show every time instead of now and then, the child runs on one CPU with its
main thread at SCHED_IDLE: a SIGSTOP sent to the process as a whole is taken by the main thread
(the kernel wakes the thread group's leader for it), which then does not get the CPU while the
worker keeps running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coinpredict.base.crashpoints import CRASH_AT, CRASH_LOG

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    from coinpredict.base.crashpoints import crash_point

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # inherited by the worker
    go = threading.Event()

    def worker():
        go.wait()
        crash_point("test.point", "worker")
        with open(sys.argv[1], "w") as f:  # what a late stop lets happen (a write)
            f.write("after the point")

    t = threading.Thread(target=worker)
    t.start()
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this (main) thread only
    go.set()
    t.join()
    """
)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _stopped_child(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    marker, log = tmp_path / "marker", tmp_path / "crash.log"
    env = {**os.environ, CRASH_AT: "test.point", CRASH_LOG: str(log)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], env=env)
    deadline = time.monotonic() + 30
    while not (log.exists() and "stop test.point worker" in log.read_text()):
        assert proc.poll() is None, f"the child exited {proc.returncode} before the point"
        assert time.monotonic() < deadline, "the point was never reached"
        time.sleep(0.005)
    while _state(proc.pid) not in ("T", "t"):
        assert time.monotonic() < deadline, "the child never stopped"
        time.sleep(0.005)
    time.sleep(0.3)  # a thread that was not stopped has long written its marker by now
    return proc, marker


@pytest.mark.parametrize("run", range(3))
def test_the_thread_that_reaches_the_point_stops_there(tmp_path, run):
    proc, marker = _stopped_child(tmp_path)
    try:
        assert not marker.exists(), "the worker ran on past its crash point"
    finally:
        proc.kill()
        proc.wait()
    assert not marker.exists()


def test_sigcont_lets_the_stopped_run_go_on(tmp_path):
    """The control: the marker does get written once the run is resumed."""
    proc, marker = _stopped_child(tmp_path)
    os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(30) == 0
    assert marker.read_text() == "after the point"
