"""systemd units, timers and the installer (deploy/install-systemd.sh).

Everything runs offline: the installer renders into a DESTDIR (tmp dir) with the binary path
pointing at an existing executable, and systemd-analyze checks the rendered files with
``verify``, ``security --offline=yes`` and ``calendar``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install-systemd.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)

TIMEFRAMES = ("1m", "1h", "1d", "1w", "1M")
SERVICES = (
    "coinpredict-monitor.service",
    "coinpredict-detect-gaps.service",
    "coinpredict-train.service",
    *(f"coinpredict-cycle@{tf}.service" for tf in TIMEFRAMES),
)
TIMERS = (
    "coinpredict-monitor.timer",
    "coinpredict-detect-gaps.timer",
    "coinpredict-train.timer",
    *(f"coinpredict-cycle@{tf}.timer" for tf in TIMEFRAMES),
)
MAX_EXPOSURE = 2.5


def run_install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "TIMEFRAMES")}
    full_env.update(env or {})
    return subprocess.run(
        ["sh", str(INSTALL), *args], capture_output=True, text=True, env=full_env, timeout=60
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("systemd")
    fake_bin = base / "venv" / "bin" / "coinpredict"
    fake_bin.parent.mkdir(parents=True)
    fake_bin.write_text("#!/bin/sh\nexit 0\n")
    fake_bin.chmod(0o755)
    dest = base / "root"
    export_dir = base / "www"
    proc = run_install(
        "--destdir", str(dest),
        "--bin", str(fake_bin),
        "--prefix", str(base / "venv"),
        "--export-dir", str(export_dir),
        "--timeframes", ",".join(TIMEFRAMES),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        "dest": dest,
        "units": dest / "etc" / "systemd" / "system",
        "bin": fake_bin,
        "export": export_dir,
    }


def analyze(args: list[str], unit_dir: Path, tz: str = "UTC") -> subprocess.CompletedProcess:
    assert SYSTEMD_ANALYZE is not None
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_dir}:", TZ=tz, SYSTEMD_PAGER="", LC_ALL="C")
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60
    )


def unit_lines(path: Path) -> list[tuple[str, str]]:
    """(key, value) pairs of a unit file, comments and section headers skipped."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.append((key.strip(), value.strip()))
    return out


def unit_value(path: Path, key: str) -> str | None:
    values = [v for k, v in unit_lines(path) if k == key]
    return values[-1] if values else None


# --- installer ------------------------------------------------------------------------------


def test_installer_renders_every_unit_without_placeholders(rendered: dict[str, Path]) -> None:
    units = rendered["units"]
    names = {p.name for p in units.iterdir() if p.is_file()}
    expected = {"coinpredict-cycle@.service", *TIMERS} | {s for s in SERVICES if "@" not in s}
    assert names == expected
    for path in [*units.glob("*.service"), *units.glob("*.timer"), *units.glob("*.d/*.conf")]:
        text = path.read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"unrendered placeholder in {path.name}"
        assert "/opt/coinpredict" not in text, path.name
        assert oct(path.stat().st_mode & 0o777) == "0o644", path.name
    cycle = (units / "coinpredict-cycle@.service").read_text()
    assert str(rendered["bin"]) in cycle
    assert f"ReadWritePaths={rendered['export']}" in cycle
    assert f"COINPREDICT_EXPORT_DIR={rendered['export']}" in cycle


def test_installer_env_file_is_private_and_enables_timers(rendered: dict[str, Path]) -> None:
    etc = rendered["dest"] / "etc" / "coinpredict"
    env = etc / "coinpredict.env"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text() == (ROOT / "deploy" / "coinpredict.env.example").read_text()
    assert (etc / "coinpredict.toml.example").exists()
    assert not (etc / "coinpredict.toml").exists()  # the example never becomes the live config
    if shutil.which("systemctl"):
        wants = rendered["units"] / "timers.target.wants"
        assert sorted(p.name for p in wants.iterdir()) == sorted(TIMERS)


def test_installer_keeps_existing_env_file_and_follows_its_timeframes(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "coinpredict"
    etc.mkdir(parents=True)
    env = etc / "coinpredict.env"
    env.write_text('COINPREDICT_INFLUX_TOKEN=s3cret\nCOINPREDICT_TIMEFRAMES="1h, 1d"\n')
    env.chmod(0o600)
    proc = run_install("--destdir", str(tmp_path), "--bin", sys.executable)
    assert proc.returncode == 0, proc.stderr
    assert env.read_text().startswith("COINPREDICT_INFLUX_TOKEN=s3cret")
    assert "s3cret" not in proc.stdout + proc.stderr
    assert (
        "would run: systemctl enable --now coinpredict-cycle@1h.timer coinpredict-cycle@1d.timer"
        in proc.stdout
    )
    assert "coinpredict-cycle@1m.timer" in proc.stdout.split("disable --now")[1]
    if shutil.which("systemctl"):
        wants = {p.name for p in (tmp_path / "etc/systemd/system/timers.target.wants").iterdir()}
        assert wants == {
            "coinpredict-cycle@1h.timer",
            "coinpredict-cycle@1d.timer",
            "coinpredict-monitor.timer",
            "coinpredict-detect-gaps.timer",
            "coinpredict-train.timer",
        }


def test_installer_dry_run_without_destdir_uses_a_temp_dir(tmp_path: Path) -> None:
    proc = run_install(
        "--dry-run", "--bin", sys.executable, "--no-enable", env={"TMPDIR": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stderr
    (made,) = list(tmp_path.glob("coinpredict-install.*"))
    assert (made / "etc/systemd/system/coinpredict-monitor.service").exists()
    assert "would run: systemctl daemon-reload" in proc.stdout
    assert "systemctl enable" not in proc.stdout  # --no-enable


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeframes", "1h,5m"], "'5m' is not one of"),
        (["--bin", "relative/coinpredict"], "must be an absolute path"),
        (["--export-dir", "/var/www/coin predict"], "characters not allowed"),
        (["--export-dir", "/srv/%i"], "characters not allowed"),
        (["--export-dir", "/etc/coinpredict"], "not a sensible place"),
        (["--frobnicate"], "unknown option"),
    ],
)
def test_installer_rejects_bad_input_before_touching_anything(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_install("--destdir", str(tmp_path / "d"), "--bin", sys.executable, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "d").exists()


# --- unit contents --------------------------------------------------------------------------

REQUIRED = {
    "Type": "oneshot",
    "User": "coinpredict",
    "Group": "coinpredict",
    "EnvironmentFile": "/etc/coinpredict/coinpredict.env",
    "StateDirectory": "coinpredict",
    "UMask": "0027",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "SystemCallArchitectures": "native",
    "MemoryMax": "400M",
}


@pytest.mark.parametrize(
    "name",
    ["coinpredict-cycle@.service", "coinpredict-monitor.service",
     "coinpredict-detect-gaps.service", "coinpredict-train.service"],
)  # fmt: skip
def test_service_has_the_required_sandbox_and_settings(
    rendered: dict[str, Path], name: str
) -> None:
    path = rendered["units"] / name
    pairs = unit_lines(path)
    keys = dict(pairs)
    for key, value in REQUIRED.items():
        assert keys.get(key) == value, f"{path.name}: {key}={keys.get(key)!r}, want {value!r}"
    assert keys.get("TimeoutStartSec"), f"{path.name}: TimeoutStartSec must be explicit"
    assert ("SystemCallFilter", "@system-service") in pairs
    env = " ".join(v for k, v in pairs if k == "Environment")
    assert "COINPREDICT_STATE_DIR=/var/lib/coinpredict" in env
    assert f"COINPREDICT_EXPORT_DIR={rendered['export']}" in env
    assert "COINPREDICT_METRICS_DIR=/var/lib/coinpredict/metrics" in env
    assert "POLARS_SKIP_CPU_CHECK=1" in env  # see test_python_stack_runs_without_w_x_memory
    assert keys.get("ReadWritePaths") == str(rendered["export"])


def test_sandbox_block_is_identical_in_every_service() -> None:
    blocks = {}
    for path in sorted((ROOT / "systemd").glob("*.service")):
        text = path.read_text()
        assert "# --- sandbox" in text, path.name
        blocks[path.name] = text[text.index("# --- sandbox") :]
    assert len(set(blocks.values())) == 1, "sandbox blocks differ: " + ", ".join(blocks)


def exec_commands(path: Path) -> list[list[str]]:
    cmds = []
    for key, value in unit_lines(path):
        if key == "ExecStart":
            if not value:
                cmds.clear()  # "ExecStart=" resets the list (drop-ins)
                continue
            cmds.append(shlex.split(value.lstrip("-")))
    return cmds


def cycle_commands(units: Path, tf: str) -> list[list[str]]:
    cmds = exec_commands(units / "coinpredict-cycle@.service")
    dropin = units / f"coinpredict-cycle@{tf}.service.d"
    for conf in sorted(dropin.glob("*.conf")) if dropin.is_dir() else []:
        extra = exec_commands(conf)
        if any(k == "ExecStart" and not v for k, v in unit_lines(conf)):
            cmds = extra
        else:
            cmds += extra
    return [[a.replace("%i", tf) for a in cmd] for cmd in cmds]


def coinpredict_argv(cmd: list[str], binary: Path) -> list[str]:
    """The coinpredict part of an ExecStart (after an optional flock wrapper)."""
    assert os.access(cmd[0], os.X_OK), f"{cmd[0]} is not executable"
    if Path(cmd[0]).name == "flock":
        assert cmd[1] == "--wait" and int(cmd[2]) > 0
        assert cmd[3].startswith("/var/lib/coinpredict/.lock-")
        cmd = cmd[4:]
    assert cmd[0] == str(binary)
    return cmd[1:]


def flock_wrapper(cmd: list[str]) -> tuple[int, str]:
    """(--wait seconds, lock file) of an ExecStart wrapped in flock(1)."""
    assert Path(cmd[0]).name == "flock" and cmd[1] == "--wait", cmd
    return int(cmd[2]), cmd[3]


CYCLE_LOCK = "/var/lib/coinpredict/.lock-cycle"


def test_cycle_runs_one_coinpredict_cycle_under_the_cycle_lock(rendered: dict[str, Path]) -> None:
    """One ExecStart, ``cycle -t %i``: the chain (a failed stage does not stop the next, export
    always runs) is inside ``coinpredict cycle``, so the unit's result is the cycle's exit code
    (no "-" prefix)."""
    units, binary = rendered["units"], rendered["bin"]
    raw = [v for k, v in unit_lines(units / "coinpredict-cycle@.service") if k == "ExecStart"]
    assert len(raw) == 1 and not raw[0].startswith("-"), raw
    assert "%i" in raw[0]
    from coinpredict.jobs.runner import cycle_lock

    waits, locks = {}, {}
    for tf in TIMEFRAMES:
        (cmd,) = cycle_commands(units, tf)
        waits[tf], locks[tf] = flock_wrapper(cmd)
        assert locks[tf] == f"/var/lib/coinpredict/{cycle_lock(tf)}"  # what detect-gaps takes
        assert coinpredict_argv(cmd, binary) == ["cycle", "-t", tf]
    # the 1m cycle (ingest + export: 1m is never forecast) waits less, for a lock of its own:
    # it never queues behind the 1h/1d/1w/1M cycles that start together at 00:00:30
    assert waits == {"1m": 90, "1h": 600, "1d": 600, "1w": 600, "1M": 600}
    assert locks["1m"] == CYCLE_LOCK + "-1m"
    assert {locks[tf] for tf in ("1h", "1d", "1w", "1M")} == {CYCLE_LOCK}


def test_1m_dropin_only_shortens_the_lock_wait_and_the_timeout(rendered: dict[str, Path]) -> None:
    units = rendered["units"]
    template = units / "coinpredict-cycle@.service"
    dropin = units / "coinpredict-cycle@1m.service.d" / "10-1m.conf"
    assert unit_value(template, "TimeoutStartSec") == "30min"
    assert unit_value(dropin, "TimeoutStartSec") == "5min"
    lines = [v for k, v in unit_lines(dropin) if k == "ExecStart"]
    assert len(lines) == 2 and lines[0] == "", lines  # reset, then the one command
    (base,) = [v for k, v in unit_lines(template) if k == "ExecStart"]
    assert lines[1] == base.replace("--wait 600", "--wait 90").replace(
        ".lock-cycle", ".lock-cycle-1m"
    )
    assert {k for k, _ in unit_lines(dropin)} == {"ExecStart", "TimeoutStartSec"}


def test_exchange_jobs_share_the_cycle_lock_and_train_waits_for_nobody(
    rendered: dict[str, Path],
) -> None:
    """detect-gaps --refill talks to the exchange: it takes the cycles' lock itself, only while
    it refills (tests/test_gaps_e2e.py), so its unit has no flock wrapper, and the lock file it
    takes is the cycles' one. train (minutes) takes none, so no cycle ever waits for it. No unit
    uses the old per-step locks."""
    from coinpredict.jobs.runner import CYCLE_LOCK as IN_STATE_DIR

    units = rendered["units"]
    (cmd,) = exec_commands(units / "coinpredict-detect-gaps.service")
    assert cmd[1:] == ["detect-gaps", "--refill"] and "flock" not in cmd[0], cmd
    env = [
        v for k, v in unit_lines(units / "coinpredict-detect-gaps.service") if k == "Environment"
    ]
    assert "COINPREDICT_STATE_DIR=/var/lib/coinpredict" in env
    assert CYCLE_LOCK == f"/var/lib/coinpredict/{IN_STATE_DIR}"
    (cmd,) = exec_commands(units / "coinpredict-train.service")
    assert cmd[1:] == ["train"] and "flock" not in cmd[0], cmd
    for path in [*units.glob("*.service"), *units.glob("*.d/*.conf")]:
        for old in (".lock-ingest", ".lock-predict", ".lock-export"):
            assert old not in path.read_text(), f"{path.name} still uses {old}"


def test_job_commands_match_the_cli(rendered: dict[str, Path]) -> None:
    units, binary = rendered["units"], rendered["bin"]
    argvs = [coinpredict_argv(c, binary) for c in cycle_commands(units, "1h")]
    for name in ("coinpredict-monitor", "coinpredict-detect-gaps", "coinpredict-train"):
        argvs += [coinpredict_argv(c, binary) for c in exec_commands(units / f"{name}.service")]
    assert ["monitor"] in argvs and ["detect-gaps", "--refill"] in argvs and ["train"] in argvs
    cli = ROOT / ".venv" / "bin" / "coinpredict"
    if not cli.exists():
        pytest.skip("no .venv/bin/coinpredict to compare the unit commands with")
    for argv in argvs:
        helptext = subprocess.run(
            [str(cli), argv[0], "--help"], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb"),
        )  # fmt: skip
        assert helptext.returncode == 0, f"coinpredict {argv[0]} --help: {helptext.stderr}"
        for option in (a for a in argv[1:] if a.startswith("-")):
            assert option in helptext.stdout, f"coinpredict {argv[0]} has no {option}"


def test_monitor_findings_are_not_unit_failures(rendered: dict[str, Path]) -> None:
    path = rendered["units"] / "coinpredict-monitor.service"
    assert unit_value(path, "SuccessExitStatus") == "1 2"  # 3 (unknown) still fails the unit


# --- systemd-analyze ------------------------------------------------------------------------


@needs_analyze
def test_systemd_analyze_verify_every_unit(rendered: dict[str, Path]) -> None:
    units = rendered["units"]
    # By name through SYSTEMD_UNIT_PATH: loads templates, instances and drop-ins.
    proc = analyze(["verify", *SERVICES, *TIMERS], units)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"systemd-analyze verify warned:\n{proc.stderr}"
    # By file: this form also checks that each ExecStart executable exists.
    files = [str(units / n) for n in (*TIMERS, *SERVICES) if "@" not in n or n.endswith(".timer")]
    proc = analyze(["verify", *files], units)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"systemd-analyze verify warned:\n{proc.stderr}"


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """Guard for the test above: verify really fails on a missing binary or a typo."""
    bad = tmp_path / "coinpredict-bad.service"
    bad.write_text("[Service]\nType=oneshot\nExecStart=/nonexistent/coinpredict monitor\n")
    proc = analyze(["verify", str(bad)], tmp_path)
    assert proc.returncode != 0
    bad.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\nProtectSystm=strict\n")
    assert "Unknown key" in analyze(["verify", str(bad)], tmp_path).stderr


@needs_analyze
def test_systemd_analyze_security_exposure(rendered: dict[str, Path]) -> None:
    scores = {}
    for name in SERVICES:
        proc = analyze(["security", "--offline=yes", "--no-pager", name], rendered["units"])
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
        assert match, f"no exposure line for {name}:\n{proc.stdout}\n{proc.stderr}"
        scores[name] = float(match.group(1))
    print("\nsystemd-analyze security --offline=yes exposure:")
    for name, score in scores.items():
        print(f"  {name:40s} {score:.1f}")
    worst = {n: s for n, s in scores.items() if s > MAX_EXPOSURE}
    assert not worst, f"exposure above {MAX_EXPOSURE}: {worst}"


# OnCalendar expectations: (expression, predicate on each UTC elapse, step between elapses).
def _monthly(a: datetime, b: datetime) -> bool:
    return (b.year * 12 + b.month) - (a.year * 12 + a.month) == 1


CALENDAR = {
    "coinpredict-cycle@1m.timer": (
        lambda t: t.second == 5, timedelta(minutes=1)),
    "coinpredict-cycle@1h.timer": (
        lambda t: (t.minute, t.second) == (0, 30), timedelta(hours=1)),
    "coinpredict-cycle@1d.timer": (
        lambda t: (t.hour, t.minute, t.second) == (0, 0, 30), timedelta(days=1)),
    "coinpredict-cycle@1w.timer": (
        lambda t: t.weekday() == 0 and (t.hour, t.minute, t.second) == (0, 0, 30),
        timedelta(weeks=1)),
    "coinpredict-cycle@1M.timer": (
        lambda t: (t.day, t.hour, t.minute, t.second) == (1, 0, 0, 30), _monthly),
    "coinpredict-monitor.timer": (
        lambda t: t.second == 45 and t.minute % 2 == 0, timedelta(minutes=2)),
    "coinpredict-detect-gaps.timer": (
        lambda t: (t.hour, t.minute, t.second) == (0, 20, 0), timedelta(days=1)),
    "coinpredict-train.timer": (
        lambda t: t.weekday() == 0 and (t.hour, t.minute, t.second) == (1, 0, 0),
        timedelta(weeks=1)),
}  # fmt: skip
BASE_TIMES = ("2026-02-28 23:59:50 UTC", "2027-12-31 23:00:29 UTC")


def elapses_utc(expr: str, base: str, units: Path, iterations: int = 4) -> list[datetime]:
    # Run in a zone that is not UTC (and not a whole-hour offset), so the test proves the
    # expression carries its own "UTC" instead of relying on the machine's time zone.
    proc = analyze(
        ["calendar", f"--iterations={iterations}", f"--base-time={base}", expr],
        units, tz="Asia/Kolkata",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    utc = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("(in UTC):")]
    if not utc:  # no tz database: local time is UTC, printed on the elapse lines themselves
        utc = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(("Next elapse:", "Iter. #"))]
    assert len(utc) == iterations, proc.stdout
    out = []
    for text in utc:
        assert text.endswith(" UTC"), text
        out.append(datetime.strptime(text, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC))
    return out


@needs_analyze
@pytest.mark.parametrize("timer", TIMERS)
def test_timer_fires_on_the_utc_boundary_plus_offset(rendered: dict[str, Path], timer: str) -> None:
    path = rendered["units"] / timer
    assert unit_value(path, "AccuracySec") == "1s"
    assert unit_value(path, "Persistent") == "true"
    assert unit_value(path, "Unit") == timer.replace(".timer", ".service")
    assert unit_value(path, "WantedBy") == "timers.target"
    expr = unit_value(path, "OnCalendar")
    assert expr and expr.endswith(" UTC"), f"{timer}: OnCalendar must be pinned to UTC"
    on_grid, step = CALENDAR[timer]
    for base in BASE_TIMES:
        base_dt = datetime.strptime(base, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
        times = elapses_utc(expr, base, rendered["units"])
        assert times[0] > base_dt
        for t in times:
            assert on_grid(t), f"{timer}: {expr} elapses at {t:%a %F %T} UTC"
        for a, b in zip(times, times[1:], strict=False):
            assert step(a, b) if callable(step) else b - a == step, f"{timer}: {a} -> {b}"
        # No boundary skipped: the first elapse is at most one step after the base time.
        if not callable(step):
            assert times[0] - base_dt <= step


# --- MemoryDenyWriteExecute -----------------------------------------------------------------

MDWE_PROBE = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
try:  # control: the restriction is really in force
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(78)
except OSError:
    pass
import numpy as np, polars as pl, joblib, ccxt
rng = np.random.default_rng(0)
X = rng.random((500, 6)); y = X @ np.arange(6.0) + rng.random(500)
np.linalg.lstsq(X, y, rcond=None)
np.linalg.svd(rng.random((100, 100)))
pl.DataFrame({"a": np.arange(100)}).lazy().group_by((pl.col("a") % 3).alias("k")).agg(
    pl.col("a").sum()
).collect()
ccxt.binance()
import coinpredict.cli.app, coinpredict.forecast.models  # noqa: E401
print("ok")
"""


def test_python_stack_runs_without_w_x_memory(rendered: dict[str, Path]) -> None:
    """MemoryDenyWriteExecute=yes: emulate it with the kernel's PR_SET_MDWE (Linux >= 6.3) and
    run numpy/OpenBLAS, joblib, polars, ccxt and coinpredict's own imports under it, with
    the environment the units set (POLARS_SKIP_CPU_CHECK: polars' import-time CPUID probe
    mprotect()s a buffer to PROT_EXEC, which MDWE refuses)."""
    env = dict(os.environ)
    for key, value in unit_lines(rendered["units"] / "coinpredict-monitor.service"):
        if key == "Environment":
            for item in shlex.split(value):
                k, _, v = item.partition("=")
                if not k.startswith("COINPREDICT_"):
                    env[k] = v
    proc = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    if proc.returncode == 77:
        pytest.skip("kernel has no PR_SET_MDWE (Linux < 6.3): cannot emulate W^X here")
    assert proc.returncode != 78, "PR_SET_MDWE did not refuse a W+X mapping"
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


# --- example configuration ------------------------------------------------------------------


def test_env_example_is_valid_and_holds_no_secret_or_sandbox_paths() -> None:
    from coinpredict.base.config import load_settings

    environ = {}
    for raw in (ROOT / "deploy" / "coinpredict.env.example").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            environ[key] = value
    assert not {"COINPREDICT_INFLUX_TOKEN", "COINPREDICT_INFLUX_PASSWORD"} & set(environ)
    assert not {
        "COINPREDICT_STATE_DIR", "COINPREDICT_EXPORT_DIR", "COINPREDICT_METRICS_DIR"
    } & set(environ)  # fmt: skip
    settings = load_settings(environ=environ, config_file=None)
    assert [tf.code for tf in settings.timeframes] == list(TIMEFRAMES)


def test_toml_example_parses_with_every_line_enabled(tmp_path: Path) -> None:
    from coinpredict.base.config import load_settings

    text = (ROOT / "deploy" / "coinpredict.toml.example").read_text()
    enabled = re.sub(r"(?m)^#(\[policy|[a-z0-9_]+ = )", r"\1", text)
    assert enabled.count("\n#") < text.count("\n#")
    path = tmp_path / "coinpredict.toml"
    path.write_text(enabled)
    settings = load_settings(environ={}, config_file=path)
    assert settings.influx_db_1m == "coinpredict_1m"
    assert settings.policy(next(tf for tf in settings.timeframes if tf.code == "1h")).horizon == 24
