"""Docs stay true to the code: every setting, command and exit code is documented."""

import subprocess
import sys
from pathlib import Path

from coinpredict.base.config import _SIMPLE
from coinpredict.base.errors import ExitCode, HealthCode

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_configuration_table():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for env, key_path, _ in _SIMPLE.values():
        assert f"| {env} |" in text, env
        assert key_path[-1] in text, key_path


def test_every_command_is_in_the_readme_and_has_help():
    readme = (ROOT / "README.md").read_text()
    out = subprocess.run(
        [sys.executable, "-m", "coinpredict", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    ).stdout
    commands = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]
    assert len(commands) >= 12
    for cmd in commands:
        assert f"coinpredict {cmd}" in readme, cmd


def test_exit_codes_documented():
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    for code in list(ExitCode) + list(HealthCode):
        assert f"| {int(code)} |" in text
