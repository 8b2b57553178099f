"""The CLI surface: help, exit codes, light imports, init end to end."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.importcheck import HEAVY, cli_imports

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "coinpredict"]
COMMANDS = [
    "init",
    "backfill",
    "ingest",
    "detect-gaps",
    "predict",
    "train",
    "models",
    "cycle",
    "export",
    "status",
    "monitor",
    "check",
    "replay",
    "config",
]


def run(args, env=None, **kw):
    full_env = {**os.environ, "COINPREDICT_CONFIG": "", **(env or {})}
    return subprocess.run(
        CLI + args,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=kw.get("cwd", ROOT),
        timeout=120,
    )


def test_help_lists_every_command():
    out = run(["--help"])
    assert out.returncode == 0
    section = out.stdout.split("Commands:")[1]
    listed = set(re.findall(r"^  ([a-z-]+)(?:\s|$)", section, flags=re.M))
    assert listed == set(COMMANDS)


def test_every_command_is_registered_and_has_help():
    """The registered commands are exactly the documented ones, each with its own --help."""
    import typer.main

    from coinpredict.cli.app import app

    group = typer.main.get_command(app)
    assert sorted(group.commands) == sorted(COMMANDS)  # type: ignore[attr-defined]
    for cmd in COMMANDS:
        out = run([cmd, "--help"])
        assert out.returncode == 0, (cmd, out.stderr)
        assert out.stdout.startswith("Usage: ") and cmd in out.stdout.splitlines()[0]


@pytest.mark.parametrize(
    "args", [["--help"], ["config"], ["config", "--json"], ["status", "--help"]]
)
def test_light_paths_do_not_import_heavy_libraries(args, tmp_path):
    env = {**os.environ, "COINPREDICT_CONFIG": "", "COINPREDICT_STATE_DIR": str(tmp_path)}
    _, _, imported = cli_imports(args, env)
    assert "coinpredict" in imported
    for heavy in HEAVY:
        assert heavy not in imported, f"{args} imported {heavy}"


def test_bad_config_exits_2_and_names_setting():
    out = run(["config"], env={"COINPREDICT_SYMBOLS": 'BTC"/USDT'})
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: COINPREDICT_SYMBOLS: 'BTC\"/USDT' is not a safe spot symbol (expected BASE/QUOTE "
        "in upper-case letters and digits, e.g. BTC/USDT)"
    )
    out = run(["ingest", "-s", "BTC/USDT\nX"])
    assert out.returncode == 2
    assert "is not a safe spot symbol" in out.stderr


def test_config_masks_secrets_and_shows_sources():
    out = run(
        ["config", "--json"],
        env={"COINPREDICT_INFLUX_TOKEN": "tok-SECRET", "COINPREDICT_TIMEFRAMES": "1h,1d"},
    )
    assert out.returncode == 0
    assert "tok-SECRET" not in out.stdout
    assert '"influx_token": "********"' in out.stdout
    assert '"timeframes": "env COINPREDICT_TIMEFRAMES"' in out.stdout


def test_init_twice(settings_env, influxd):
    first = run(["init"], env=settings_env)
    assert first.returncode == 0, first.stderr
    assert (
        f"created database '{settings_env['COINPREDICT_INFLUX_DB_1M']}' (retention 180d"
        in first.stdout
    )
    second = run(["init"], env=settings_env)
    assert second.returncode == 0
    assert "nothing to change" in second.stdout
    assert Path(settings_env["COINPREDICT_STATE_DIR"]).is_dir()
    assert Path(settings_env["COINPREDICT_EXPORT_DIR"]).is_dir()


def test_init_influx_down_exits_1(tmp_path):
    out = run(
        ["init"],
        env={
            "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9",
            "COINPREDICT_STATE_DIR": str(tmp_path / "s"),
            "COINPREDICT_EXPORT_DIR": str(tmp_path / "w"),
        },
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "error: InfluxDB at http://127.0.0.1:9 is unreachable: Connection refused"
    )


def test_unknown_exchange_is_a_config_error_before_anything_is_touched(tmp_path):
    state = tmp_path / "state"
    out = run(
        ["ingest"],
        env={
            "COINPREDICT_EXCHANGE": "nosuchexchange",
            "COINPREDICT_STATE_DIR": str(state),
            "COINPREDICT_INFLUX_URL": "http://127.0.0.1:9",
        },
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: COINPREDICT_EXCHANGE: 'nosuchexchange' is not a ccxt exchange id"
    )
    assert not state.exists()


def test_an_unwritable_state_dir_is_one_line_and_exit_1_for_every_command(tmp_path, influxd):
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (root ignores plain permissions)")
    env = {
        "COINPREDICT_STATE_DIR": str(locked / "state"),
        "COINPREDICT_EXPORT_DIR": str(locked / "www"),
        "COINPREDICT_INFLUX_URL": influxd.url,
        "COINPREDICT_EXCHANGE_URL": "http://127.0.0.1:9",
    }
    try:
        for args in (
            ["init"],
            ["ingest"],
            ["detect-gaps"],
            ["predict"],
            ["export"],
            ["monitor"],
            ["train"],
            ["models", "rollback"],
        ):
            out = run(args, env=env)
            assert out.returncode == 1, (args, out.stdout, out.stderr)
            assert "Traceback" not in out.stderr, (args, out.stderr)
            last = out.stderr.strip().splitlines()[-1]
            assert last.startswith("error: cannot ") and str(locked) in last, (args, last)
            assert last.endswith("Operation not permitted"), (args, last)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
