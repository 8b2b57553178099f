"""The dashboard page (coinpredict/publish/web) in a real browser: Debian's chromium driven by
Playwright, against a real nginx with the shipped site (tests/helpers/nginx_site.py), over exports made by
the real pipeline (real influxd, ``export_once``) at the real clock, because the page takes "now"
from nginx's Date header.

One browser per module; each test opens a fresh context (no cache shared between tests).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers.browser import CHROMIUM, launch
from helpers.influx import fresh_env
from helpers.nginx_site import NGINX, WEB_DIR, Site, serve
from helpers.world import World

from coinpredict.base.clock import FixedClock
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES, iso
from coinpredict.jobs.runner import run_export_job as run_export
from coinpredict.local.state import PredictState, save_predict
from coinpredict.publish.export import export_once
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import StoredForecast

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed on this machine"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no {CHROMIUM} (make setup)"),
]

H = 3_600_000
H1 = TIMEFRAMES["1h"]
M1 = TIMEFRAMES["1m"]
# The band colours of app.js (COLORS.band95 / band80), as RGB.
BAND95 = (0xC6, 0xDB, 0xF7)
BAND80 = (0x6F, 0x9F, 0xE0)


# --- building exports with the real pipeline --------------------------------------------------


def _walk(n: int, seed: int, start: float = 100.0) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed)
    out, price = [], start
    for _ in range(n):
        o = price
        c = max(1.0, o * (1 + rng.gauss(0, 0.01)))
        out.append((o, max(o, c) * (1 + abs(rng.gauss(0, 0.004))), min(o, c) * 0.996, c))
        price = c
    return out


def _candles(world: World, s: Series, last_open: int, seed: int, n: int = 150) -> float:
    rows = [
        (s.timeframe.add(last_open, -(n - 1 - i)), o, hi, lo, c, 10.0 + i)
        for i, (o, hi, lo, c) in enumerate(_walk(n, seed))
    ]
    world.candles.write(s, rows)
    return rows[-1][4]


def _forecast(
    world: World, s: Series, last: int, last_close: float, *, name: str = "naive", drift=0.0
) -> None:
    horizon = 24
    ts = tuple(H1.add(last, i + 1) for i in range(horizon))
    close = tuple(last_close * (1 + drift * (i + 1)) for i in range(horizon))
    width = tuple(last_close * 0.004 * math.sqrt(i + 1) for i in range(horizon))
    world.predictions.write(
        StoredForecast(
            series=s, role="champion", model_name=name, model_version="v3", level=0.8,
            last_closed_ms=last, origin_ms=ts[0], issued_at_ms=H1.close_time(last) + 20_000,
            timestamps=ts, close=close,
            lower=tuple(c - w for c, w in zip(close, width, strict=True)),
            upper=tuple(c + w for c, w in zip(close, width, strict=True)),
            lower_95=tuple(c - 2 * w for c, w in zip(close, width, strict=True)),
            upper_95=tuple(c + 2 * w for c, w in zip(close, width, strict=True)),
        )
    )  # fmt: skip


def _env(influxd: Any, tmp: Path, name: str, symbols: list[str]) -> dict[str, str]:
    # Margins, so that no state changes while the module runs (the page judges by the real
    # clock): a fresh 1h series stays fresh for 30 min after its next candle is due, a forecast
    # 2 h behind stays stale (not hard_stale) at any minute of the hour, the kept 1m history of
    # the unknown series does not turn hard_stale.
    config = tmp / "coinpredict.toml"
    config.write_text(
        '[policy.1h]\ngrace = "30m"\nprediction_hard_limit = "5h"\n'
        '[policy.1m]\ndata_hard_limit = "2h"\n'
    )
    return {
        **fresh_env(influxd, f"web_{name}", tmp),
        "COINPREDICT_CONFIG": str(config),
        "COINPREDICT_SYMBOLS": ",".join(symbols),
        "COINPREDICT_TIMEFRAMES": "1h",
    }


# Each series of the states site and the state the page must show for it.
STATES = {
    "BTC/USDT 1h": "fresh",
    "ETH/USDT 1h": "stale",
    "SOL/USDT 1h": "hard_stale",
    "XRP/USDT 1h": "corrupt",
    "DOGE/USDT 1h": "fresh",  # degraded
    "TRU/USDT 1h": "unknown",  # its prediction file is truncated after the export
    "MIS/USDT 1h": "fresh",  # its history file is deleted after the export
    "OLD/USDT 1h": "hard_stale",  # exported fresh 10 h ago: blocked by the server's clock
    "ADA/USDT 1m": "unknown",  # its candle read failed in the latest export
}


def _build_states(influxd: Any, tmp: Path) -> Path:
    now = int(time.time() * 1000)
    full = [k.split()[0] for k in STATES if k.endswith(" 1h") and not k.startswith("OLD/")]
    http = InfluxHTTP(influxd.url)
    try:
        world = World(_env(influxd, tmp, "states", full), http)
        last = H1.last_closed_open(now)
        lasts = {"ETH/USDT": last - 2 * H, "SOL/USDT": last - 8 * H}
        for i, sym in enumerate(full):
            s = world.series(sym)
            at = lasts.get(sym, last)
            close = _candles(world, s, at, seed=i)
            _forecast(world, s, at, -5.0 if sym == "XRP/USDT" else close,
                      name="ets" if sym == "ETH/USDT" else "naive",
                      drift=0.002 if sym == "ETH/USDT" else 0.0)  # fmt: skip
        save_predict(world.settings.state_dir, world.series("DOGE/USDT"),
                     PredictState(status="failed", reason="fit blew up"))  # fmt: skip
        for _ in range(2):  # the second one's status.json has the first one's run record
            assert run_export(world.settings, FixedClock(now)).exit_code == 0
        # Narrowed exports of series outside the full one (status.json does not know them).
        world.reload(COINPREDICT_SYMBOLS=",".join([*full, "OLD/USDT", "ADA/USDT"]),
                     COINPREDICT_TIMEFRAMES="1m,1h")  # fmt: skip
        # OLD/USDT 1h: exported 10 h ago, when it was fresh; never exported since
        old = world.series("OLD/USDT")
        then = now - 10 * H
        close = _candles(world, old, H1.last_closed_open(then), seed=99)
        _forecast(world, old, H1.last_closed_open(then), close)
        export_once(world.settings, FixedClock(then), [old], narrowed=True)
        # ADA/USDT 1m: exported, then its read fails (the 1m database is gone): unknown, and
        # its last history file is kept
        ada = world.series("ADA/USDT", "1m")
        _candles(world, ada, M1.last_closed_open(now), seed=7)
        export_once(world.settings, FixedClock(now), [ada], narrowed=True)
        http.query(f'DROP DATABASE "{world.settings.influx_db_1m}"', write=True)
        failed = export_once(world.settings, FixedClock(now + 1000), [ada], narrowed=True)
        assert failed.failed == ["ADA/USDT 1m"]
    finally:
        http.close()
    out = tmp / "www"
    text = (out / "prediction_TRU_USDT_1h.json").read_text()
    (out / "prediction_TRU_USDT_1h.json").write_text(text[: len(text) // 2])
    (out / "history_MIS_USDT_1h.json").unlink()
    return out


def _build_many(influxd: Any, tmp: Path, n: int = 50) -> Path:
    now = int(time.time() * 1000)
    symbols = [f"C{i:02d}/USDT" for i in range(n)]
    http = InfluxHTTP(influxd.url)
    try:
        world = World(_env(influxd, tmp, "many", symbols), http)
        last = H1.last_closed_open(now)
        for i, sym in enumerate(symbols):
            s = world.series(sym)
            _forecast(world, s, last, _candles(world, s, last, seed=i, n=300))
        assert export_once(world.settings, FixedClock(now)).exit_code == 0
    finally:
        http.close()
    return tmp / "www"


# --- the browser ------------------------------------------------------------------------------


@dataclass
class Page:
    """One loaded page and everything it logged."""

    page: Any
    export: Path
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    expected: list[str] = field(default_factory=list)  # parts of errors a test provokes

    def chip(self, key: str) -> Any:
        return self.page.locator(f'.chip[data-key="{key}"]')

    def open(self, key: str) -> Any:
        """Click the chip of ``key`` ("BTC/USDT 1h") and wait for its chart or its error."""
        self.chip(key).click()
        self.page.wait_for_function(
            "k => document.querySelector('#detail').dataset.key === k", arg=key
        )
        return self.page.locator("#detail")

    def band_pixels(self) -> tuple[int, int]:
        """Pixels of the 95 % and 80 % band colours in the chart's canvas (its screenshot)."""
        return self.page.evaluate(
            """([b95, b80]) => {
              const c = document.querySelector('#chart canvas');
              if (!c) return [0, 0];
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const near = (i, rgb) => Math.abs(d[i] - rgb[0]) <= 3 &&
                Math.abs(d[i + 1] - rgb[1]) <= 3 && Math.abs(d[i + 2] - rgb[2]) <= 3;
              let n95 = 0, n80 = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (near(i, b95)) n95++; else if (near(i, b80)) n80++;
              }
              return [n95, n80];
            }""",
            [list(BAND95), list(BAND80)],
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture(scope="module")
def states_site(influxd, tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web-states")
    export = _build_states(influxd, tmp)
    with serve(tmp / "nginx", export) as site:
        yield site


@pytest.fixture(scope="module")
def many_site(influxd, tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web-many")
    export = _build_many(influxd, tmp)
    with serve(tmp / "nginx", export) as site:
        yield site


def _load(browser: Any, site: Site, *, fake_timers: bool = False) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    loaded = Page(page, site.export)
    page.on("console", lambda m: loaded.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: loaded.errors.append(f"pageerror: {e}"))
    if fake_timers:
        page.clock.install()  # timers the test fast-forwards; "now" still comes from the server
    page.goto(site.url)
    page.wait_for_selector("body[data-checked=true]")  # every series dated, not only the first
    try:
        yield loaded
        unexpected = [e for e in loaded.errors if not any(x in e for x in loaded.expected)]
        assert unexpected == [], "console errors on the page"
    finally:
        context.close()


@pytest.fixture
def states(browser, states_site) -> Iterator[Page]:
    yield from _load(browser, states_site)


# --- the states ---------------------------------------------------------------------------


def test_every_series_has_a_chip_with_its_state_in_words(states: Page) -> None:
    chips = states.page.locator(".chip")
    assert chips.count() == len(STATES)
    for key, state in STATES.items():
        chip = states.chip(key)
        assert chip.get_attribute("data-state") == state, key
        word = state.replace("_", " ")
        assert word in chip.inner_text(), (key, chip.inner_text())  # never by colour alone
    assert "degraded" in states.chip("DOGE/USDT 1h").inner_text()
    assert "degraded" not in states.chip("BTC/USDT 1h").inner_text()


def test_banner_says_the_health_in_a_word(states: Page) -> None:
    banner = states.page.locator("#banner")
    assert banner.get_attribute("data-health") == "critical"
    assert "CRITICAL" in banner.inner_text()
    assert "exported" in banner.inner_text() and "ago" in banner.inner_text()
    assert banner.get_attribute("data-manifest-old") == "false"


def test_fresh_series_draws_candles_fan_centre_marker_legend_and_steps(states: Page) -> None:
    detail = states.open("BTC/USDT 1h")
    chart = detail.locator("#chart")
    assert chart.get_attribute("data-fan") == "true"
    assert chart.get_attribute("data-candles") == "120"
    n95, n80 = states.band_pixels()
    assert n95 > 500 and n80 > 500, (n95, n80)
    legend = detail.locator("#legend").inner_text()
    assert "80 % interval" in legend and "95 % interval" in legend
    assert "centre line: the last close" in legend  # the naive point forecast is the last close
    assert "model naive v3" in legend and "issued 20" in legend
    assert "last closed candle 20" in legend
    rows = detail.locator("#step-table tbody tr")
    assert rows.count() == 24
    first = rows.nth(0).locator("td").nth(1).inner_text()
    doc = json.loads((states.export / "prediction_BTC_USDT_1h.json").read_text())
    assert first == doc["predictions"][0]["timestamp"] and first.endswith("Z")  # UTC, as the file
    assert "fresh" in detail.locator('.state-line[data-kind="prediction"]').inner_text()
    assert "fresh" in detail.locator('.state-line[data-kind="data"]').inner_text()
    assert detail.locator(".alert, .warn").count() == 0


def test_stale_series_shows_an_amber_warning_with_the_files_text_and_its_fan(states: Page) -> None:
    detail = states.open("ETH/USDT 1h")
    warn = detail.locator(".warn.stale")
    doc = json.loads((states.export / "prediction_ETH_USDT_1h.json").read_text())
    assert doc["freshness"] == "stale"
    assert warn.inner_text() == "Stale: " + doc["warning"].removeprefix("stale: ")
    assert warn.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 244, 214)"
    assert detail.locator("#chart").get_attribute("data-fan") == "true"
    assert min(states.band_pixels()) > 500
    assert "centre line: the point forecast of model ets" in detail.locator("#legend").inner_text()


@pytest.mark.parametrize(
    ("symbol", "state", "reason"),
    [
        ("SOL/USDT 1h", "hard stale", "hard limit 5h"),
        ("XRP/USDT 1h", "corrupt", "stored forecast is invalid"),
        ("ADA/USDT 1m", "unknown", "could not read this series"),
        ("OLD/USDT 1h", "hard stale", "by the server's clock"),
    ],
)
def test_blocked_series_show_a_red_reason_no_fan_but_candles(
    states: Page, symbol: str, state: str, reason: str
) -> None:
    detail = states.open(symbol)
    alert = detail.locator(".alert.blocked")
    text = alert.inner_text()
    assert state in text and reason in text and "No forecast is drawn" in text, text
    assert alert.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 231, 230)"
    chart = detail.locator("#chart")
    assert chart.get_attribute("data-fan") == "false"
    assert int(chart.get_attribute("data-candles") or 0) == 120  # the candles are still shown
    assert states.band_pixels() == [0, 0]
    assert detail.locator("#step-table").count() == 0


def test_a_file_that_says_fresh_but_is_past_its_hard_limit_is_blocked(states: Page) -> None:
    doc = json.loads((states.export / "prediction_OLD_USDT_1h.json").read_text())
    entry = next(
        s
        for s in json.loads((states.export / "manifest.json").read_text())["series"]
        if s["symbol"] == "OLD/USDT"
    )
    assert doc["freshness"] == entry["freshness"] == "fresh" and doc["predictions"]
    detail = states.open("OLD/USDT 1h")
    line = detail.locator('.state-line[data-kind="prediction"]').inner_text()
    # 10 h old, or 11 h in the minutes after the hour (the age counts from the candle's close)
    assert "hard stale" in line and re.search(r"\b1[01]h\b", line), line
    assert "hard stale" in detail.locator('.state-line[data-kind="data"]').inner_text()
    assert states.chip("OLD/USDT 1h").get_attribute("data-state") == "hard_stale"


def test_degraded_is_a_separate_badge(states: Page) -> None:
    detail = states.open("DOGE/USDT 1h")
    line = detail.locator(".badge-line").inner_text()
    assert "degraded" in line and "last good forecast; predict failed" in line
    assert "fit blew up" not in line  # predict's error is ops text: never in the public files
    assert detail.locator("#chart").get_attribute("data-fan") == "true"
    assert "fresh" in detail.locator('.state-line[data-kind="prediction"]').inner_text()


def test_data_and_prediction_freshness_are_shown_apart(states: Page) -> None:
    detail = states.open("XRP/USDT 1h")  # fresh data, corrupt forecast
    assert "fresh" in detail.locator('.state-line[data-kind="data"]').inner_text()
    assert "corrupt" in detail.locator('.state-line[data-kind="prediction"]').inner_text()


@pytest.mark.parametrize(
    ("symbol", "file", "problem"),
    [
        ("TRU/USDT 1h", "prediction_TRU_USDT_1h.json", "not valid JSON"),
        ("MIS/USDT 1h", "history_MIS_USDT_1h.json", "HTTP 404"),
    ],
)
def test_a_truncated_or_missing_file_is_a_visible_error_for_that_series(
    states: Page, symbol: str, file: str, problem: str
) -> None:
    detail = states.open(symbol)
    error = detail.locator(".alert.file-error")
    assert error.count() == 1
    assert file in error.inner_text() and problem in error.inner_text()
    assert "file error" in states.chip(symbol).inner_text()
    assert states.page.locator("#detail h2").is_visible()  # never a blank page
    if problem == "HTTP 404":  # the browser itself logs the failed fetch
        states.expected.append("the server responded with a status of 404")


def test_ops_view(states: Page) -> None:
    ops = states.page.locator("#ops")
    assert "InfluxDB: reachable" in ops.locator("#ops-influx").inner_text()
    rows = ops.locator("#ops-series tbody tr")
    assert rows.count() == len(STATES) - 2  # OLD and ADA were never in a full export's status
    eth = ops.locator('#ops-series tbody tr:has-text("ETH/USDT")').inner_text()
    assert "stale" in eth and "fresh < 1h 30m" in eth and "hard 5h" in eth
    jobs = ops.locator("#ops-jobs").inner_text()
    assert "export" in jobs and "failure rate" in jobs
    assert (
        "SOL/USDT 1h prediction: by the server's clock, forecast from candle"
        in ops.locator("#ops-problems").inner_text()
    )


def test_keyboard_moves_between_series(states: Page) -> None:
    page = states.page
    page.locator(".chip").first.focus()
    first = page.locator(".chip").first.get_attribute("data-key")
    page.keyboard.press("ArrowRight")
    second = page.locator(".chip").nth(1).get_attribute("data-key")
    page.wait_for_function("k => document.querySelector('#detail').dataset.key === k", arg=second)
    assert page.evaluate("document.activeElement.dataset.key") == second
    assert page.locator(".chip").nth(1).get_attribute("aria-selected") == "true"
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("k => document.querySelector('#detail').dataset.key === k", arg=first)
    page.keyboard.press("End")
    last = page.locator(".chip").last.get_attribute("data-key")
    page.wait_for_function("k => document.querySelector('#detail').dataset.key === k", arg=last)
    # one tab stop for the chip list (roving tabindex)
    assert page.locator('.chip[tabindex="0"]').count() == 1


def test_an_old_manifest_is_flagged(browser, states_site: Site) -> None:
    """A manifest written 3 h ago (the export stopped): the page says so."""
    manifest = states_site.export / "manifest.json"
    saved = manifest.read_bytes()
    doc = json.loads(saved)
    doc["generated_at"] = iso(int(time.time() * 1000) - 3 * H)
    _replace(manifest, json.dumps(doc).encode())
    try:
        for loaded in _load(browser, states_site):
            banner = loaded.page.locator("#banner")
            assert banner.get_attribute("data-manifest-old") == "true"
            assert "older than its expected period" in banner.inner_text()
    finally:
        _replace(manifest, saved)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.test.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_manifest_is_polled_with_etag_and_series_refetched_only_when_changed(
    browser, states_site: Site
) -> None:
    manifest = states_site.export / "manifest.json"
    saved = manifest.read_bytes()
    try:
        for loaded in _load(browser, states_site, fake_timers=True):
            page = loaded.page
            assert page.locator("#detail").get_attribute("data-key") == "BTC/USDT 1h"
            seen: list[tuple[str, int, str | None]] = []
            page.on("response", lambda r, seen=seen: seen.append(
                (r.url.rsplit("/", 1)[-1], r.status, r.request.headers.get("if-none-match"))
            ))  # fmt: skip
            page.clock.run_for(46_000)  # one poll: nothing changed
            page.wait_for_function("() => true")
            page.wait_for_timeout(200)
            assert [(n, s) for n, s, _ in seen] == [("manifest.json", 304)]
            assert seen[0][2]  # sent If-None-Match
            # one series file of the shown series changes: only that file is fetched again
            doc = json.loads(saved)
            for a in doc["artifacts"]:
                if a["file"] == "prediction_BTC_USDT_1h.json":
                    a["generated_at"] = iso(int(time.time() * 1000))
            _replace(manifest, json.dumps(doc).encode())
            seen.clear()
            page.clock.run_for(46_000)
            page.wait_for_timeout(300)
            assert sorted(n for n, _, _ in seen) == ["manifest.json", "prediction_BTC_USDT_1h.json"]
    finally:
        _replace(manifest, saved)


# --- 50 series ------------------------------------------------------------------------------


def test_fifty_series_interactive_and_timed(browser, many_site: Site) -> None:
    for loaded in _load(browser, many_site):
        page = loaded.page
        assert page.locator(".chip").count() == 50
        ready_ms = int(page.evaluate("document.body.dataset.readyMs"))
        checked_ms = int(page.evaluate("document.body.dataset.checkedMs"))
        nav = page.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0];"
            " return [n.domContentLoadedEventEnd, n.loadEventEnd]; })()"
        )
        t0 = time.monotonic()
        page.locator('.chip[data-key="C37/USDT 1h"]').click()
        page.wait_for_function(
            "() => document.querySelector('#detail').dataset.key === 'C37/USDT 1h'"
            " && document.querySelector('#chart canvas')"
        )
        switch_ms = (time.monotonic() - t0) * 1000
        figure = (
            f"50 series: interactive (chips + first chart drawn) {ready_ms} ms after navigation "
            f"start (DOMContentLoaded {nav[0]:.0f} ms), all 50 re-checked {checked_ms} ms, "
            f"switching series {switch_ms:.0f} ms; "
            f"load {open('/proc/loadavg').read().split()[:3]}"
        )
        print(figure)
        out = os.environ.get("COINPREDICT_WEB_TIMING")
        if out:
            Path(out).write_text(figure + "\n")


# --- the vendored chart library ------------------------------------------------------------


def test_vendored_chart_library_matches_its_vendor_note() -> None:
    vendor = WEB_DIR / "vendor" / "uplot"
    note = json.loads((vendor / "VENDOR.json").read_text())
    assert note["name"] == "uplot" and note["license"] == "MIT"
    assert note["integrity"].startswith("sha512-") and len(note["integrity"]) == 95
    assert note["tarball"].endswith(f"/uplot-{note['version']}.tgz")
    on_disk = {p.name for p in vendor.iterdir()} - {"VENDOR.json"}
    assert on_disk == set(note["files"])
    for name, meta in note["files"].items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == meta["sha256"], name
    banner = (vendor / "uPlot.iife.min.js").read_text()[:80]
    assert f"(v{note['version']})" in banner
    assert "MIT License" in (vendor / "LICENSE").read_text()


def test_package_data_ships_the_page() -> None:
    import tomllib

    root = WEB_DIR.parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["coinpredict"]
    from fnmatch import fnmatch

    for path in WEB_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(root / "coinpredict").as_posix()
            assert any(fnmatch(rel, p) for p in patterns), rel
