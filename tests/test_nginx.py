"""The nginx site (deploy/nginx-coinpredict.conf), served by a REAL nginx (tests/helpers/nginx_site.py).

The JSON rules here; the page's own headers are at the end, the page itself in tests/test_web.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.nginx_site import INSTALL, NGINX, WEB_DIR, Site, serve

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed on this machine")

ORIGIN = "https://app.example.org"
OTHER_ORIGIN = "http://localhost:5173"
SECRET_TMP = ".prediction_BTC_USDT_1h.json.k3j4l5.tmp"


def _write_artifacts(export: Path) -> None:
    predictions = [
        {
            "timestamp": f"2026-01-01T{h:02d}:00:00Z",
            "close": 90000.5 + h,
            "lower": 1.0,
            "upper": 2.0,
        }
        for h in range(24)
    ]
    files = {
        "manifest.json": {"schema_version": 1, "artifacts": [{"file": "prediction_BTC_USDT_1h.json"}]},
        "status.json": {"generated_at": "2026-01-01T00:00:30Z", "series": []},
        "prediction_BTC_USDT_1h.json": {"symbol": "BTC/USDT", "predictions": predictions},
        "history_BTC_USDT_1h.json": {"symbol": "BTC/USDT", "candles": predictions},
        "backtest_summary.json": {"note": "some future artifact"},
    }  # fmt: skip
    for name, obj in files.items():
        (export / name).write_text(json.dumps(obj, indent=2))
    (export / SECRET_TMP).write_text('{"half": "writ')
    (export / ".hidden").write_text("dot file")
    (export / "notes.txt").write_text("not json")
    (export / "sub").mkdir()
    (export / "sub" / "inner.json").write_text("{}")
    (export / "passwd.json").symlink_to("/etc/passwd")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    prefix = tmp_path_factory.mktemp("nginx")
    export = prefix / "www"
    export.mkdir()
    _write_artifacts(export)
    with serve(prefix, export, "--cors-origin", ORIGIN) as running:
        yield running


# --- content type, caching, CORS ----------------------------------------------------------


@pytest.mark.parametrize("name", ["manifest.json", "status.json"])
def test_index_files_are_json_no_cache_with_etag(site: Site, name: str) -> None:
    status, headers, body = site.request("GET", f"/{name}", {"Origin": ORIGIN})
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"].startswith('"')
    assert json.loads(body) == json.loads((site.export / name).read_text())


@pytest.mark.parametrize("name", ["prediction_BTC_USDT_1h.json", "history_BTC_USDT_1h.json"])
def test_series_files_have_a_short_max_age(site: Site, name: str) -> None:
    status, headers, _ = site.request("GET", f"/{name}")
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=30, must-revalidate"
    assert headers["ETag"]


def test_other_json_artifacts_are_served_no_cache(site: Site) -> None:
    status, headers, _ = site.request("GET", "/backtest_summary.json")
    assert status == 200
    assert headers["Cache-Control"] == "no-cache"


def test_cors_allows_the_configured_origin_only(site: Site) -> None:
    _, headers, _ = site.request("GET", "/manifest.json", {"Origin": ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in ", ".join(headers.get_all("Vary") or [])
    _, headers, _ = site.request("GET", "/manifest.json", {"Origin": OTHER_ORIGIN})
    assert "Access-Control-Allow-Origin" not in headers
    assert "Origin" in ", ".join(headers.get_all("Vary") or [])
    # "always": error responses carry it too, so a browser can read the status.
    _, headers, _ = site.request("GET", "/prediction_NOPE_USDT_1h.json", {"Origin": ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == ORIGIN


def test_gzip_when_accepted(site: Site) -> None:
    raw = (site.export / "prediction_BTC_USDT_1h.json").read_bytes()
    status, headers, body = site.request(
        "GET", "/prediction_BTC_USDT_1h.json", {"Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in ", ".join(headers.get_all("Vary") or [])
    assert gzip.decompress(body) == raw
    assert len(body) < len(raw)
    status, headers, body = site.request("GET", "/prediction_BTC_USDT_1h.json")
    assert "Content-Encoding" not in headers and body == raw


# --- revalidation -------------------------------------------------------------------------


def test_etag_revalidation_gives_304(site: Site) -> None:
    _, headers, _ = site.request("GET", "/manifest.json")
    etag = headers["ETag"]
    status, headers, body = site.request("GET", "/manifest.json", {"If-None-Match": etag})
    assert status == 304 and body == b""
    assert headers["Cache-Control"] == "no-cache"
    # The weak ETag of a gzipped response revalidates as well.
    _, headers, _ = site.request("GET", "/prediction_BTC_USDT_1h.json", {"Accept-Encoding": "gzip"})
    weak = headers["ETag"]
    status, _, _ = site.request(
        "GET", "/prediction_BTC_USDT_1h.json", {"If-None-Match": weak, "Accept-Encoding": "gzip"}
    )
    assert status == 304
    status, _, _ = site.request("GET", "/manifest.json", {"If-None-Match": '"deadbeef-1"'})
    assert status == 200


def test_atomic_replace_is_seen_at_once(site: Site) -> None:
    """export replaces files by rename(2); with open_file_cache off the next request serves the
    new inode and the old ETag no longer matches."""
    target = site.export / "status.json"
    _, headers, _ = site.request("GET", "/status.json")
    old_etag = headers["ETag"]
    tmp = site.export / ".status.json.x1y2z3.tmp"
    new_text = json.dumps({"generated_at": "2026-01-01T01:00:30Z", "series": [1, 2, 3]})
    tmp.write_text(new_text)
    later = target.stat().st_mtime + 5
    os.utime(tmp, (later, later))
    status, _, _ = site.request("GET", "/.status.json.x1y2z3.tmp")
    assert status == 404  # the temp file is never visible
    os.replace(tmp, target)
    status, headers, body = site.request("GET", "/status.json", {"If-None-Match": old_etag})
    assert status == 200
    assert headers["ETag"] != old_etag
    assert body.decode() == new_text


# --- what must never be served --------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [f"/{SECRET_TMP}", "/%2e" + SECRET_TMP[1:], "/.hidden", "/sub/../" + SECRET_TMP]
)
def test_dotfiles_and_temp_files_are_404(site: Site, path: str) -> None:
    status, _, body = site.request("GET", path)
    assert status == 404
    assert b"writ" not in body and b"dot file" not in body


@pytest.mark.parametrize(
    "path",
    ["/../etc/passwd", "/%2e%2e/", "/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
     "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/sub/../../etc/passwd"],
)  # fmt: skip
def test_path_traversal_never_leaves_the_export_dir(site: Site, path: str) -> None:
    status, _, body = site.request("GET", path)
    # nginx rejects a URI that climbs above the root while parsing it (400), before any
    # location or file lookup; anything else that slips through must be a 404.
    assert status in (400, 404)
    assert b"root:" not in body


def test_symlinks_out_of_the_export_dir_are_not_followed(site: Site) -> None:
    status, _, body = site.request("GET", "/passwd.json")
    assert status in (403, 404)
    assert b"root:" not in body


@pytest.mark.parametrize(
    "path",
    ["/sub/", "/sub", "/sub/inner.json", "/notes.txt", "/index.html", "/vendor/", "/vendor/uplot/",
     "/vendor/uplot/VENDOR.json", "/app.js.map", "/web/app.js"],
)  # fmt: skip
def test_no_listing_no_subdirectories_no_other_files(site: Site, path: str) -> None:
    status, _, body = site.request("GET", path)
    assert status == 404
    for name in (b"manifest.json", b"prediction_", b"inner.json", b"not json"):
        assert name not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_only_get_and_head_are_allowed(site: Site, method: str) -> None:
    status, headers, _ = site.request(method, "/manifest.json", {"Content-Length": "0"})
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_head_returns_headers_only(site: Site) -> None:
    status, headers, body = site.request("HEAD", "/manifest.json")
    assert status == 200 and body == b""
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert headers["ETag"]


def test_nginx_logged_no_errors_at_startup(site: Site) -> None:
    log = (site.prefix / "error.log").read_text()
    assert "[emerg]" not in log and "[alert]" not in log, log


# --- the renderer -------------------------------------------------------------------------


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(INSTALL), "--output", str(tmp_path / "site.conf"), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cors-origin", "https://app.example.org/path"], "is not an origin"),
        (["--cors-origin", "javascript:alert(1)"], "is not an origin"),
        (["--export-dir", "/var/www/x; autoindex on"], "may only contain"),
        (["--export-dir", "relative/www"], "absolute path"),
        (["--listen", "80; include /etc/passwd"], "unsupported characters"),
        (["--server-name", "a}b"], "unsupported characters"),
        (["--web-dir", "/srv/web; autoindex on"], "may only contain"),
        (["--web-dir", "web"], "absolute path"),
        (["--web-dir", "/nonexistent/web"], "no index.html"),
    ],
)
def test_renderer_rejects_values_that_would_inject_nginx_syntax(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = _render(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "site.conf").exists()


def test_renderer_cors_variants(tmp_path: Path) -> None:
    proc = _render(tmp_path, "--cors-origin", "*")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "site.conf").read_text()
    assert 'default "*";' in text and "$http_origin;" not in text.split("server {")[0]
    proc = _render(tmp_path)
    assert proc.returncode == 0, proc.stderr
    map_block = (tmp_path / "site.conf").read_text().split("server {")[0]
    assert 'default "";' in map_block and "$http_origin;" not in map_block
    proc = _render(tmp_path, "--cors-origin", "https://a.example, http://localhost:3000")
    map_block = (tmp_path / "site.conf").read_text().split("server {")[0]
    assert '"https://a.example" $http_origin;' in map_block
    assert '"http://localhost:3000" $http_origin;' in map_block


# --- the dashboard page's files (the page itself: tests/test_web.py) -----------------------

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def test_the_page_is_served_at_root_no_cache_with_a_strict_policy(site: Site) -> None:
    status, headers, body = site.request("GET", "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache" and headers["ETag"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == CSP
    assert body == (WEB_DIR / "index.html").read_bytes()


@pytest.mark.parametrize(
    ("path", "mime"),
    [("/app.js", "text/javascript"), ("/app.css", "text/css"), ("/favicon.svg", "image/svg+xml"),
     ("/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
     ("/vendor/uplot/uPlot.min.css", "text/css"), ("/vendor/uplot/LICENSE", "text/plain")],
)  # fmt: skip
def test_page_assets_have_their_mime_type_and_nosniff(site: Site, path: str, mime: str) -> None:
    status, headers, body = site.request("GET", path)
    assert status == 200
    charset = "" if mime.startswith("image/") else "; charset=utf-8"
    assert headers["Content-Type"] == mime + charset
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    assert body == (WEB_DIR / path.lstrip("/")).read_bytes()


def test_the_page_has_no_inline_script_or_style() -> None:
    """What the policy would block must not be in the page: every script and style is a file."""
    import re

    html = (WEB_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []
    assert sorted(re.findall(r'src="([^"]+)"', html)) == [
        "app.js",
        "vendor/uplot/uPlot.iife.min.js",
    ]
