"""Shared helpers for the performance and reliability benches (bench/*.py).

Each bench starts its own ``influxd`` (coinpredict.replay.influxd) and replay exchange on free
127.0.0.1 ports inside a temporary directory, uses ``../shared/data`` when present (else the
committed samples in tests/data), prints figures and asserts nothing about timings.

The CLI is run as a real subprocess (``.venv/bin/coinpredict`` or ``python -m coinpredict``).
Its peak RSS comes from ``/usr/bin/time -f %M`` (else a tiny Python launcher doing ``os.wait4``):
never take ``ru_maxrss`` of a child forked straight from the bench process, because Linux keeps
the RSS high-water mark across fork+exec, so a child of a 300 MB bench process (the replay holds
the CSV text in memory) reports >= 300 MB whatever it does itself.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "tests" / "data"
DATA = SHARED if SHARED.is_dir() and any(SHARED.glob("*_USDT-1h.csv")) else SAMPLES
USING_SAMPLES = DATA == SAMPLES

PY = sys.executable
_CLI = Path(PY).parent / "coinpredict"
CLI: list[str] = [str(_CLI)] if _CLI.exists() else [PY, "-m", "coinpredict"]

H = 3_600_000
Row = tuple[int, float, float, float, float, float]


# --- data ---------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[Row]:
    with path.open() as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in reader
        ]


def write_rows(path: Path, rows: Sequence[Sequence[object]]) -> None:
    """Write a replay CSV; values are written with repr() (shortest round-trip form)."""
    with path.open("w") as handle:
        handle.write("timestamp,open,high,low,close,volume\n")
        for r in rows:
            handle.write(f"{int(r[0])},{r[1]!r},{r[2]!r},{r[3]!r},{r[4]!r},{r[5]!r}\n")


def symbols_1h() -> list[str]:
    """Base names of every 1h file in DATA, BTC and ETH first."""
    bases = sorted(p.name.split("_")[0] for p in DATA.glob("*_USDT-1h.csv"))
    first = [b for b in ("BTC", "ETH") if b in bases]
    return first + [b for b in bases if b not in first]


def bits(row: Sequence[float]) -> tuple:
    """A row as exact bits (timestamp + the float64 bytes of each value)."""
    return (int(row[0]), *(struct.pack("<d", float(x)) for x in row[1:]))


# --- servers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def tempdir(prefix: str = "cpbench-", *, keep: bool = False) -> Iterator[Path]:
    """A scratch directory, removed afterwards unless ``keep`` (then its path is printed)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"  work dir kept: {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def influxd(workdir: Path, data_overrides: dict[str, str] | None = None) -> Iterator:
    """A private influxd; ``data_overrides`` change keys of its [data] section (e.g. make the
    cache snapshot and full compaction happen after seconds instead of 10 min / 4 h)."""
    from coinpredict.replay.influxd import start_influxd

    if not data_overrides:
        proc = start_influxd(workdir / "influxd")
    else:
        proc = start_influxd_with(workdir / "influxd", data_overrides)
    try:
        yield proc
    finally:
        proc.stop()


def tuned_config(workdir: Path, port: int, rpc_port: int, data_overrides: dict[str, str]) -> str:
    """The dev influxd config with keys of its [data] section replaced (commented-out defaults
    included)."""
    import re

    from coinpredict.replay import influxd as devserver

    text = devserver.render_config(workdir, port, rpc_port)
    out, section = [], ""
    for line in text.splitlines():
        head = re.match(r"\s*\[+([^\]]+)\]+", line)
        if head:
            section = head.group(1).strip()
        kv = re.match(r"(\s*)#?\s*([A-Za-z0-9_-]+)\s*=", line)
        if section == "data" and kv and kv.group(2) in data_overrides:
            line = f"  {kv.group(2)} = {data_overrides[kv.group(2)]}"
        out.append(line)
    return "\n".join(out) + "\n"


def start_influxd_with(workdir: Path, data_overrides: dict[str, str], prefix: Sequence[str] = ()):  # noqa: ANN201
    """influxd with ``tuned_config``, started behind ``prefix`` (e.g. a cgroup launcher)."""
    from coinpredict.replay import influxd as devserver

    def config_for(port: int, rpc_port: int) -> str:
        return tuned_config(workdir, port, rpc_port, data_overrides)

    return devserver.launch(workdir, config_for, prefix=prefix)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, *, max_s: float = 30.0, busy: float = 0.05) -> float:
    """Wait until a process uses < ``busy`` of a CPU over 1 s (influxd compacting after a big
    write slows the next measurement down); return the seconds waited."""
    t0 = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - t0 < max_s:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - last < busy:
            break
        last = now
    return time.monotonic() - t0


def du_bytes(path: Path) -> int:
    """Allocated bytes on disk under ``path`` (what ``du -s --block-size=1`` reports)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def env_for(
    influx_url: str,
    work: Path,
    *,
    exchange_url: str | None = None,
    symbols: str = "BTC/USDT",
    timeframes: str = "1h",
    db: str = "bench",
    **extra: str,
) -> dict[str, str]:
    env = {
        "COINPREDICT_INFLUX_URL": influx_url,
        "COINPREDICT_INFLUX_DB": db,
        "COINPREDICT_INFLUX_DB_1M": f"{db}_1m",
        "COINPREDICT_STATE_DIR": str(work / "state"),
        "COINPREDICT_EXPORT_DIR": str(work / "www"),
        "COINPREDICT_CONFIG": "",
        "COINPREDICT_SYMBOLS": symbols,
        "COINPREDICT_TIMEFRAMES": timeframes,
    }
    if exchange_url:
        env["COINPREDICT_EXCHANGE_URL"] = exchange_url
    env.update(extra)
    return env


def settings_for(env: dict[str, str]):  # noqa: ANN201
    from coinpredict.base.config import load_settings

    return load_settings(environ=env)


# --- running the CLI ----------------------------------------------------------------------------
@dataclass
class CliRun:
    args: list[str]
    rc: int
    wall_s: float
    maxrss_mb: float
    out: str
    err: str

    def last_err_line(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def _child_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")}
    base.update(env)
    base.setdefault("COLUMNS", "200")
    return base


_LAUNCHER = (
    "import os,sys\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.execvp(sys.argv[2],sys.argv[2:])\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write(str(ru.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(st) & 255)\n"
)


def rss_prefix(out: Path) -> list[str]:
    """A launcher that writes its child's peak RSS (KiB) to ``out`` and exits with its code."""
    if Path("/usr/bin/time").exists():
        return ["/usr/bin/time", "-q", "-f", "%M", "-o", str(out)]
    return [PY, "-c", _LAUNCHER, str(out)]


def start_cli(
    args: Sequence[str], env: dict[str, str], *, prefix: Sequence[str] = (), work: Path
) -> tuple[subprocess.Popen, Path, Path]:
    """Start the CLI with stdout/stderr going to files (no pipe can fill up). ``proc.pid`` is
    the CLI itself (or the ``prefix`` program): kill -9 drills use this, without a launcher."""
    work.mkdir(parents=True, exist_ok=True)
    n = time.monotonic_ns()
    out_p, err_p = work / f".out-{n}", work / f".err-{n}"
    with out_p.open("w") as out_f, err_p.open("w") as err_f:
        proc = subprocess.Popen(
            [*prefix, *CLI, *args],
            env=_child_env(env),
            stdout=out_f,
            stderr=err_f,
            stdin=subprocess.DEVNULL,
        )
    return proc, out_p, err_p


def reap(proc: subprocess.Popen, timeout_s: float | None = None) -> tuple[int, float]:
    """Wait for the child with wait4: (exit code, ru_maxrss in MiB -- inflated by the parent's
    own RSS, see the module docstring; run_cli measures through a launcher instead)."""
    if proc.returncode is not None:  # already reaped (by poll())
        return proc.returncode, float("nan")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        except ChildProcessError:
            return proc.wait(), float("nan")
        if pid == proc.pid:
            break
        if deadline and time.monotonic() > deadline:
            proc.kill()
            deadline = None
        time.sleep(0.01)
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    return rc, ru.ru_maxrss / 1024.0


def run_cli(
    args: Sequence[str],
    env: dict[str, str],
    *,
    work: Path,
    prefix: Sequence[str] = (),
    timeout_s: float = 600,
) -> CliRun:
    work.mkdir(parents=True, exist_ok=True)
    rss_p = work / f".rss-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    proc, out_p, err_p = start_cli(args, env, prefix=[*rss_prefix(rss_p), *prefix], work=work)
    rc, _ = reap(proc, timeout_s)
    wall = time.perf_counter() - t0
    out, err = out_p.read_text(errors="replace"), err_p.read_text(errors="replace")
    try:
        rss = int(rss_p.read_text().split()[-1]) / 1024.0
    except (OSError, ValueError, IndexError):
        rss = float("nan")
    for p in (out_p, err_p, rss_p):
        p.unlink(missing_ok=True)
    return CliRun(list(args), rc, wall, rss, out, err)


def faketime_prefix(instant_iso: str) -> list[str]:
    """``faketime -f '@YYYY-MM-DD HH:MM:SS'``: a clock that starts at the instant and runs."""
    exe = shutil.which("faketime")
    if exe is None:
        raise RuntimeError("faketime not installed")
    return [exe, "-f", "@" + instant_iso.replace("T", " ").rstrip("Z")]


# --- reporting ----------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    try:
        import ccxt

        ccxt_v = ccxt.__version__
    except ImportError:
        ccxt_v = "-"
    influx_v = "-"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        influx_v = subprocess.run(
            ["influxd", "version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, Python {platform.python_version()}, "
        f"ccxt {ccxt_v}, {influx_v}, data {DATA}"
    )


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {machine()}")
    print(f"# load average at start: {loadavg()} (other work on this machine skews wall times)")
    if USING_SAMPLES:
        print("# NOTE: ../shared/data not found: using the committed samples (tests/data)")


if __name__ == "__main__":  # `make bench` runs every bench/*.py: here, just the machine
    header("bench helpers (bench/common.py): nothing to measure")
