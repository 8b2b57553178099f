"""Screenshot of the dashboard page with the browser tests' tooling (Playwright + Debian's
chromium, tests/helpers/browser.py): ``make demo``, then

    .venv/bin/python scripts/screenshot.py [URL] [OUT.png]

(default http://127.0.0.1:8080/ and docs/dashboard.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.browser import launch  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "docs" / "dashboard.png")
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("body[data-checked=true]")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out}" + (f"; console errors: {errors}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
