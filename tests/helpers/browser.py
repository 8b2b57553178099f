"""Debian's chromium driven by Playwright (its own browser download is not used): the launch
settings of the browser tests (tests/test_web.py) and of scripts/screenshot.py."""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("COINPREDICT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def launch(playwright: Any) -> Any:
    """A new headless chromium. Playwright gives every launch a fresh --user-data-dir (a new
    temporary profile) of its own and refuses that flag in ``args``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
