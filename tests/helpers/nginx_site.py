"""A REAL nginx serving the shipped site (deploy/nginx-coinpredict.conf) for the tests.

The site is rendered with deploy/install-nginx.sh --output, wrapped in a minimal main config whose
pid, logs and temp paths live in a tmp dir, and nginx runs as a non-daemon child process on a
free 127.0.0.1 port, serving an export directory (and the page from coinpredict/publish/web).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install-nginx.sh"
WEB_DIR = ROOT / "coinpredict" / "publish" / "web"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)


@dataclass
class Site:
    port: int
    export: Path
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            # putrequest sends the path byte for byte (no normalisation of "..").
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "coinpredict.test")
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(prefix: Path, export: Path, port: int, args: list[str]) -> subprocess.Popen:
    assert NGINX is not None
    site_conf = prefix / "site.conf"
    render = subprocess.run(
        ["sh", str(INSTALL), "--output", str(site_conf), "--listen", f"127.0.0.1:{port}",
         "--server-name", "coinpredict.test", "--export-dir", str(export), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert render.returncode == 0, render.stderr
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log info;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {prefix}/access.log;\n"
        f"    client_body_temp_path {prefix}/tmp/body;\n"
        f"    proxy_temp_path {prefix}/tmp/proxy;\n"
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;\n"
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;\n"
        f"    scgi_temp_path {prefix}/tmp/scgi;\n"
        f"    include {site_conf};\n"
        "}\n"
    )
    base = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"),
            "-c", str(prefix / "nginx.conf")]  # fmt: skip
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(
        [*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_up(proc: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@contextmanager
def serve(prefix: Path, export: Path, *args: str) -> Iterator[Site]:
    """nginx with the shipped site serving ``export``; ``args`` go to install-nginx.sh."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        proc = _start(prefix, export, port, list(args))
        if _wait_up(proc, port):
            break
        proc.kill()
        last_error = proc.communicate(timeout=10)[1].decode(errors="replace")
    else:
        pytest.fail(f"nginx did not start: {last_error}")
    try:
        yield Site(port=port, export=export, prefix=prefix)
    finally:
        proc.terminate()  # SIGTERM: fast shutdown of master and workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
