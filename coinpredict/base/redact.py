"""The one redactor: every string that leaves the process passes through :func:`redact`.

Masked, wherever they appear in a text:

- URL userinfo (``http://user:password@host`` -> ``http://***@host``);
- secret query parameters (``token``, ``key``, ``secret``, ``signature``, ``password`` and names
  containing them, ``p`` of InfluxDB 1.x) -> ``token=***``;
- ``Authorization``-style credentials (``Basic ...``, ``Token ...``, ``Bearer ...``);
- every value registered with :func:`register` (the InfluxDB password and token, the password
  of the InfluxDB URL's userinfo, the whole webhook URL). Values shorter than
  ``MIN_REGISTERED`` characters are masked only by the patterns above (replacing every
  occurrence of a two-letter password would mangle all output).

Settings registers its secrets when it is built, so a value masked in one output is masked in all
of them: stderr (``cli.app.main``), log lines (a logging filter), stdout, run records and state
(``local``), exported JSON (``publish.artifacts.dumps``), webhook payloads and the textfile.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
MIN_REGISTERED = 4

_SECRET_PARAM = (
    r"[A-Za-z0-9_.-]*(?:token|key|secret|signature|password|passwd|pwd)[A-Za-z0-9_.-]*|p|sig"
)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s\"'<>?#]+)@")
_QUERY = re.compile(rf"(?P<lead>[?&;](?:{_SECRET_PARAM}))=(?P<value>[^&;#\s\"'<>]+)", re.I)
_AUTH = re.compile(
    r"\b(?P<kind>Basic|Bearer|Token)\s+(?=\S*[0-9=])(?P<cred>[A-Za-z0-9+/=._~-]{8,})"
)

_lock = threading.Lock()
_registered: set[str] = set()
_pattern: re.Pattern[str] | None = None
_forms: tuple[str, ...] = ()  # every registered form, for a quick look before the regex
_AUTH_WORDS = ("Basic", "Bearer", "Token")


def register(*values: str | None) -> None:
    """Mask these exact values (and their percent- and JSON-encoded forms) from now on."""
    global _pattern, _forms
    forms: set[str] = set()
    for value in values:
        if not value or len(value) < MIN_REGISTERED:
            continue
        forms.update({value, unquote(value), quote(value, safe=""), json.dumps(value)[1:-1]})
    forms = {f for f in forms if len(f) >= MIN_REGISTERED}
    with _lock:
        if forms <= _registered:
            return
        _registered.update(forms)
        ordered = sorted(_registered, key=len, reverse=True)  # longest first
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))
        _forms = tuple(ordered)


def register_url(url: str | None, *, whole: bool = False) -> None:
    """A URL's userinfo password (and, with ``whole``, the URL itself: a webhook's path often
    is its token)."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
    register(password)
    if whole:
        register(url, url.rstrip("/"))


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host/x`` -> (``http://host/x``, user, pw): credentials leave the URL."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return bare, user, password


def redact(text: str) -> str:
    """``text`` with every credential masked."""
    if not text:
        return text
    # each regex runs only where a plain substring search finds what it needs: most texts (state
    # files, forecasts) hold none of it, and a regex over a large file costs milliseconds
    pattern, forms = _pattern, _forms
    if pattern is not None and any(form in text for form in forms):
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    if "=" in text:
        text = _QUERY.sub(rf"\g<lead>={MASK}", text)
    if any(word in text for word in _AUTH_WORDS):
        text = _AUTH.sub(rf"\g<kind> {MASK}", text)
    return text


def show_url(url: str | None) -> str | None:
    """A URL fit for output: userinfo and secret parameters masked."""
    return None if url is None else redact(url)


class RedactingFilter(logging.Filter):
    """Rewrites every log record's message through :func:`redact` (attach to each handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = clean, ()
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
