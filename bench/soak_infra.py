"""Machinery of the soak (bench/soak.py): the cgroup, the faked clock's environment, nginx and the
replay exchange as child processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from common import ROOT

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup/cgroup.controllers")


class Cgroup:
    """One cgroup (v1 memory + cpu, or v2) with a memory limit and a CFS CPU quota. ``prefix()``
    is a launcher that moves itself into the cgroup and execs the command, so that every child
    of the command is inside from its first instruction. Unusable (not root, no writable cgroup
    fs): ``dirs`` is empty, ``prefix()`` is empty and the samples are blank."""

    def __init__(self, name: str, memory_mb: int, cpus: float) -> None:
        self.name, self.memory_mb, self.cpus = name, memory_mb, cpus
        self.v2 = V2.exists() and not V1.is_dir()
        self.dirs: list[Path] = []
        self.reason = ""

    @classmethod
    @contextlib.contextmanager
    def create(cls, name: str, memory_mb: int, cpus: float) -> Iterator[Cgroup]:
        group = cls(name, memory_mb, cpus)
        try:
            group._setup()
        except OSError as exc:
            group.reason = f"no cgroup ({exc.strerror or exc}): unconfined"
            group._remove()
            group.dirs = []
        try:
            yield group
        finally:
            group._remove()

    def _setup(self) -> None:
        quota = max(1000, int(self.cpus * 100_000))
        limit = str(self.memory_mb * 2**20)
        if self.v2:
            d = Path("/sys/fs/cgroup") / self.name
            d.mkdir()
            self.dirs = [d]
            (d / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (d / "memory.swap.max").write_text("0")
            (d / "cpu.max").write_text(f"{quota} 100000")
            return
        mem, cpu = V1 / self.name, Path("/sys/fs/cgroup/cpu") / self.name
        mem.mkdir()
        self.dirs = [mem]
        cpu.mkdir()
        self.dirs.append(cpu)
        (mem / "memory.limit_in_bytes").write_text(limit)
        with contextlib.suppress(OSError):
            (mem / "memory.memsw.limit_in_bytes").write_text(limit)
        (cpu / "cpu.cfs_period_us").write_text("100000")
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def set_cpus(self, cpus: float) -> None:
        """Change the CPU quota (the preload runs at ``--preload-cpus``, the day at ``--cpus``)."""
        if not self.dirs:
            return
        self.cpus = cpus
        quota = max(1000, int(cpus * 100_000))
        if self.v2:
            (self.dirs[0] / "cpu.max").write_text(f"{quota} 100000")
        else:
            (self.dirs[-1] / "cpu.cfs_quota_us").write_text(str(quota))

    def _remove(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), 9)  # only ours: every process in it was started here
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)

    def describe(self) -> str:
        if not self.dirs:
            return self.reason or "none"
        return f"{'v2' if self.v2 else 'v1'} {self.memory_mb} MiB, {self.cpus:g} CPU"

    def prefix(self) -> list[str]:
        if not self.dirs:
            return []
        moves = "; ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in self.dirs)
        return ["sh", "-c", f'{moves}; exec "$@"', "sh"]

    def _read(self, name: str) -> str:
        with contextlib.suppress(OSError):
            return (self.dirs[0] / name).read_text()
        return ""

    def _throttled_s(self) -> float:
        """Seconds the CPU quota held the group back so far (cpu.stat)."""
        with contextlib.suppress(OSError, ValueError, StopIteration):
            text = (self.dirs[-1] / "cpu.stat").read_text()
            key, scale = ("throttled_usec", 1e6) if self.v2 else ("throttled_time", 1e9)
            line = next(ln for ln in text.splitlines() if ln.startswith(key + " "))
            return int(line.split()[1]) / scale
        return float("nan")

    def reset_peak(self) -> None:
        if self.dirs and not self.v2:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "memory.max_usage_in_bytes").write_text("0")

    def sample(self) -> dict[str, str]:
        """Usage now, the peak since the last sample (v1: reset each time; v2: memory.peak,
        the peak since creation), anon/file split and OOM kills so far."""
        if not self.dirs:
            return {}
        mb = 2**20
        usage_f, peak_f, oom_f, anon_k, cache_k = (
            ("memory.current", "memory.peak", "memory.events", "anon", "file")
            if self.v2
            else (
                "memory.usage_in_bytes",
                "memory.max_usage_in_bytes",
                "memory.oom_control",
                "total_rss",
                "total_cache",
            )
        )
        usage, peak = self._read(usage_f), self._read(peak_f) or "0"
        self.reset_peak()
        stat = dict(ln.split() for ln in self._read("memory.stat").splitlines())
        ooms = dict(ln.split() for ln in self._read(oom_f).splitlines()).get("oom_kill", "?")
        anon, cache = stat.get(anon_k, "0"), stat.get(cache_k, "0")
        return {
            "cpu_throttled_s": f"{self._throttled_s():.1f}",
            "cg_usage_mb": f"{int(usage or 0) / mb:.0f}",
            "cg_peak_mb": f"{int(peak or 0) / mb:.0f}",
            "cg_anon_mb": f"{int(anon) / mb:.0f}",
            "cg_cache_mb": f"{int(cache) / mb:.0f}",
            "oom_kills": ooms,
        }


def faketime_env(offset_file: Path, site: Path) -> dict[str, str]:
    """Environment of a faked process (LD_PRELOAD itself is added only in front of the program,
    so that time(1), flock(1) and sh keep the real clock)."""
    return {
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_FORCE_MONOTONIC_FIX": "0",
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
    }


def query_influx(url: str, q: str) -> None:
    body = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=body, timeout=30) as resp:
        resp.read()


def start_replay(
    cli: Sequence[str], data: Path, fenv: dict[str, str], lib: str, log: Path
) -> tuple[subprocess.Popen, str]:
    """``coinpredict replay serve`` on the faked clock (outside the cgroup); returns its URL."""
    out = log.with_suffix(".url")
    env = {**os.environ, **fenv, "LD_PRELOAD": lib}
    with out.open("w") as url_f, log.open("w") as err_f:
        proc = subprocess.Popen(
            [*cli, "replay", "serve", "--data", str(data), "--port", "0"],
            env=env, stdout=url_f, stderr=err_f, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:  # stopped while it loads (Ctrl-C, SIGTERM, no URL): the replay goes too, never leaks
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            text = out.read_text()
            if text.endswith("\n"):
                return proc, text.splitlines()[0].strip()
            time.sleep(0.2)
        raise RuntimeError(f"the replay did not start: {log.read_text()[-500:]}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def start_nginx(prefix: Path, export: Path, launcher: list[str]) -> tuple[subprocess.Popen, int]:
    """nginx with the shipped site (deploy/install-nginx.sh --output) on a free port."""
    from coinpredict.replay.influxd import free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = prefix / "site.conf"
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "install-nginx.sh"), "--output", str(site),
         "--listen", f"127.0.0.1:{port}", "--export-dir", str(export)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {k}_temp_path {prefix}/tmp/{v};\n" for k, v in (
        ("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
        ("uwsgi", "uwsgi"), ("scgi", "scgi")))  # fmt: skip
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temps}"
        f"    include {site};\n}}\n"
    )
    proc = subprocess.Popen(
        [*launcher, nginx, "-p", str(prefix), "-e", str(prefix / "error.log"),
         "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"nginx did not start: {(prefix / 'error.log').read_text()[-500:]}")
