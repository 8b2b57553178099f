"""Start a private ``influxd`` (Debian package ``influxdb``, 1.x) for tests and the demo.

The config is ``influxd config -config /dev/null`` with the directories moved under ``workdir``,
HTTP bound to 127.0.0.1:``port``, the RPC listener on 127.0.0.1:``rpc_port``, and reporting, the
monitor store, subscriber and continuous queries off.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from coinpredict.base.errors import CoinpredictError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(workdir: Path, port: int, rpc_port: int, *, auth: bool = False) -> str:
    base = subprocess.run(
        ["influxd", "config", "-config", "/dev/null"], capture_output=True, text=True, check=True
    ).stdout
    overrides: dict[str, dict[str, str]] = {
        "": {"reporting-disabled": "true", "bind-address": f'"127.0.0.1:{rpc_port}"'},
        "meta": {"dir": f'"{workdir / "meta"}"', "logging-enabled": "false"},
        "data": {
            "dir": f'"{workdir / "data"}"',
            "wal-dir": f'"{workdir / "wal"}"',
            "query-log-enabled": "false",
        },
        "monitor": {"store-enabled": "false"},
        "subscriber": {"enabled": "false"},
        "continuous_queries": {"enabled": "false", "log-enabled": "false"},
        "http": {
            "bind-address": f'"127.0.0.1:{port}"',
            "log-enabled": "false",
            "auth-enabled": "true" if auth else "false",
            "pprof-enabled": "false",
        },
        "logging": {"level": '"warn"', "suppress-logo": "true"},
    }
    section = ""
    out: list[str] = []
    for line in base.splitlines():
        header = re.match(r"\s*\[+([^\]]+)\]+", line)
        if header:
            section = header.group(1).strip()
        else:
            kv = re.match(r"(\s*)([A-Za-z0-9_-]+)\s*=", line)
            if kv and kv.group(2) in overrides.get(section, {}):
                line = f"{kv.group(1)}{kv.group(2)} = {overrides[section][kv.group(2)]}"
        out.append(line)
    if "reporting-disabled" not in base:
        out.insert(0, "reporting-disabled = true")
    return "\n".join(out) + "\n"


@dataclass
class InfluxProcess:
    workdir: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class _Exited(CoinpredictError):
    """influxd ended before it answered (on a free port picked by us: most likely another
    process took the port between the pick and influxd's bind)."""


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on 127.0.0.1:``port`` (None where /proc/net/tcp is unreadable)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    local = f"0100007F:{port:04X}"
    return {f[9] for f in map(str.split, lines) if f[1] == local and f[3] == "0A"}


def _owns_socket(pid: int, inodes: set[str]) -> bool:
    """True when ``pid`` or one of its children holds one of the socket ``inodes`` (a launcher
    such as a cgroup wrapper may run influxd as its child)."""
    wanted = {f"socket:[{i}]" for i in inodes}
    return _holds(pid, wanted) or any(_holds(child, wanted) for child in _children(pid))


def _holds(pid: int, wanted: set[str]) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in wanted:
                return True
        except OSError:
            continue
    return False


def _children(pid: int) -> Iterator[int]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                yield int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue


def _pings(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/ping")
        return conn.getresponse().status == 204
    except OSError:
        return False


def spawn(
    workdir: Path, port: int, prefix: Sequence[str] = (), timeout_s: float = 15.0
) -> InfluxProcess:
    """Start influxd on ``workdir/influxdb.conf`` (HTTP on 127.0.0.1:``port``, behind ``prefix``,
    e.g. a cgroup launcher) and wait until *that* process (or its child) listens on the port and
    answers /ping; its exit before that is raised at once as :class:`_Exited`. Without the
    ownership check, an influxd that lost the port to another test's influxd would seem up, and
    two tests would share one database."""
    with (workdir / "influxd.log").open("ab") as log:
        proc = subprocess.Popen(
            [*prefix, "influxd", "-config", str(workdir / "influxdb.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    handle = InfluxProcess(workdir, port, proc)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise _Exited(f"influxd exited with code {proc.returncode} before it answered")
        inodes = _listening_inodes(port)
        ours = inodes is None or (bool(inodes) and _owns_socket(proc.pid, inodes))
        if ours and _pings(port):
            return handle
        if time.monotonic() > deadline:
            handle.stop()
            raise CoinpredictError(f"influxd did not answer on 127.0.0.1:{port}")
        time.sleep(0.05)


def launch(
    workdir: Path,
    config_for: Callable[[int, int], str],
    port: int | None = None,
    prefix: Sequence[str] = (),
) -> InfluxProcess:
    """Write ``config_for(http_port, rpc_port)`` to ``workdir/influxdb.conf`` and :func:`spawn`
    influxd. Ports we picked are picked again (three tries) when influxd exits before answering."""
    workdir.mkdir(parents=True, exist_ok=True)
    tries = 1 if port else 3
    for attempt in range(1, tries + 1):
        http_port = port or free_port()
        (workdir / "influxdb.conf").write_text(config_for(http_port, free_port()))
        try:
            return spawn(workdir, http_port, prefix)
        except _Exited:
            if attempt == tries:
                raise
    raise AssertionError("unreachable")


def start_influxd(workdir: Path, port: int | None = None, *, auth: bool = False) -> InfluxProcess:
    if shutil.which("influxd") is None:
        raise CoinpredictError("influxd not found: install the Debian package 'influxdb'")
    return launch(
        workdir, lambda http_port, rpc: render_config(workdir, http_port, rpc, auth=auth), port
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m coinpredict.replay.influxd DIR PORT``: start influxd detached, print its pid."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m coinpredict.replay.influxd DIR PORT", file=sys.stderr)
        return 2
    proc = start_influxd(Path(args[0]).resolve(), int(args[1]))
    print(proc.process.pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
