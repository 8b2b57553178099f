"""Run the CLI under ``python -X importtime`` and name the top-level packages it imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ccxt", "sklearn", "joblib", "scipy", "polars", "numpy", "pydantic")


def cli_imports(args: list[str], env: Mapping[str, str]) -> tuple[int, str, set[str]]:
    """(exit code, stdout, top-level packages imported) of ``coinpredict ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "coinpredict", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=ROOT,
        timeout=120,
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return proc.returncode, proc.stdout, imported
