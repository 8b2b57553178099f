"""Start a private ``influxd`` (Debian package ``influxdb``, 1.x) for tests and the demo.

The config is ``influxd config -config /dev/null`` with the directories moved under ``workdir``,
HTTP bound to 127.0.0.1:``port``, the RPC listener on 127.0.0.1:``rpc_port``, and reporting, the
monitor store, subscriber and continuous queries off.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import time
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


def wait_for_ping(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 204:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise CoinpredictError(f"influxd did not answer on 127.0.0.1:{port}")
        time.sleep(0.05)


def start_influxd(workdir: Path, port: int | None = None, *, auth: bool = False) -> InfluxProcess:
    if shutil.which("influxd") is None:
        raise CoinpredictError("influxd not found: install the Debian package 'influxdb'")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = workdir / "influxdb.conf"
    config.write_text(render_config(workdir, port, free_port(), auth=auth))
    log = (workdir / "influxd.log").open("ab")
    proc = subprocess.Popen(
        ["influxd", "-config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    handle = InfluxProcess(workdir, port, proc)
    try:
        wait_for_ping(port)
    except CoinpredictError:
        handle.stop()
        raise
    return handle


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
