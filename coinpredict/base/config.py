"""Settings: one frozen dataclass, resolved once.

Precedence: command-line flags > ``COINPREDICT_*`` environment > TOML file > defaults
(docs/configuration.md lists every setting). Every value is validated here, so an invalid
setting stops the command with exit 2 before anything is touched, and the message names the
setting and the value. ``sources`` records where each effective value came from, for
``coinpredict config``.
"""

from __future__ import annotations

import datetime
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from coinpredict.base import redact
from coinpredict.base.errors import ConfigError
from coinpredict.base.symbols import validate_symbol
from coinpredict.base.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    ORDER,
    WEEK_MS,
    Timeframe,
    parse_duration,
    parse_instant,
    parse_timeframe,
)

SECRET_FIELDS = frozenset({"influx_token", "influx_password", "alert_webhook"})
DEFAULT_CONFIG_PATHS = (Path("coinpredict.toml"), Path("/etc/coinpredict/coinpredict.toml"))


@dataclass(frozen=True)
class TimeframePolicy:
    """Per-timeframe thresholds and sizes (the freshness defaults)."""

    grace_ms: int
    data_hard_ms: int
    prediction_hard_ms: int | None  # None: never a prediction target (1m)
    horizon: int
    backfill_start_ms: int | None = None  # None: the exchange's first candle (1m: the window)


DEFAULT_POLICIES: Mapping[str, TimeframePolicy] = MappingProxyType(
    {
        "1m": TimeframePolicy(2 * MINUTE_MS, 15 * MINUTE_MS, None, 0),
        "1h": TimeframePolicy(5 * MINUTE_MS, 6 * HOUR_MS, 3 * HOUR_MS, 24),
        "1d": TimeframePolicy(30 * MINUTE_MS, 3 * DAY_MS, 2 * DAY_MS, 14),
        "1w": TimeframePolicy(2 * HOUR_MS, 3 * WEEK_MS, 2 * WEEK_MS, 8),
        "1M": TimeframePolicy(6 * HOUR_MS, 92 * DAY_MS, 62 * DAY_MS, 6),
    }
)


@dataclass(frozen=True)
class TopN:
    """``top:N[:QUOTE]``: the N spot symbols with the largest 24h quote volume."""

    n: int
    quote: str | None = None

    def __str__(self) -> str:
        return f"top:{self.n}" + (f":{self.quote}" if self.quote else "")


@dataclass(frozen=True)
class Settings:
    exchange: str = "binance"
    exchange_url: str | None = None
    symbols: tuple[str, ...] | TopN = ("BTC/USDT",)
    timeframes: tuple[Timeframe, ...] = (parse_timeframe("1h"),)
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "coinpredict"
    influx_db_1m: str = "coinpredict_1m"
    influx_token: str | None = field(default=None, repr=False)
    influx_username: str | None = None
    influx_password: str | None = field(default=None, repr=False)
    state_dir: Path = Path("var/state")
    export_dir: Path = Path("var/www")
    metrics_dir: Path | None = None  # None: STATE_DIR/metrics
    alert_webhook: str | None = field(default=None, repr=False)
    one_minute_window_ms: int = 180 * DAY_MS
    history_candles: int = 500
    interval_level: float = 0.8
    stale_escalate_ms: int = 6 * HOUR_MS
    top_refresh_ms: int = DAY_MS
    lock_wait_ms: int = 10_000
    exchange_timeout_ms: int = 10_000
    model_keep: int = 5  # model versions kept per series (never the champion or its predecessor)
    policies: Mapping[str, TimeframePolicy] = field(default_factory=lambda: DEFAULT_POLICIES)
    config_file: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        redact.register(self.influx_token, self.influx_password)
        redact.register_url(self.influx_url)
        redact.register_url(self.exchange_url)
        redact.register_url(self.alert_webhook, whole=True)

    def policy(self, tf: Timeframe) -> TimeframePolicy:
        return self.policies[tf.code]

    def database_for(self, tf: Timeframe) -> str:
        return self.influx_db_1m if tf.code == "1m" else self.influx_db

    @property
    def effective_metrics_dir(self) -> Path:
        return self.metrics_dir if self.metrics_dir is not None else self.state_dir / "metrics"

    def public_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON values, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("sources", "policies"):
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = _masked(f.name, value)
            elif f.name == "timeframes":
                value = [tf.code for tf in value]
            elif f.name == "symbols":
                value = str(value) if isinstance(value, TopN) else list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        out["policies"] = {
            code: {
                "grace_ms": p.grace_ms,
                "data_hard_ms": p.data_hard_ms,
                "prediction_hard_ms": p.prediction_hard_ms,
                "horizon": p.horizon,
                "backfill_start_ms": p.backfill_start_ms,
            }
            for code, p in self.policies.items()
        }
        return out


def _masked(name: str, value: str) -> str:
    """A secret as ``config`` shows it: the webhook's scheme and host, nothing else."""
    if name == "alert_webhook":
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname}/{redact.MASK}"
    return "********"


# --- parsing helpers ------------------------------------------------------------------------
# Every value is checked for type first (TOML gives str, int, float, bool, date/time, list and
# table; the environment gives text), then for a finite value in range. An error names the
# setting and the value (masked when it is a secret); no value ever reaches a traceback.

MAX_DURATION_MS = 3650 * DAY_MS  # ten years: the largest duration any setting accepts
MONTH_MAX_MS = 31 * DAY_MS  # the longest candle (1M)
_TYPE_NAMES = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (list, "a list"),
    (tuple, "a list"),
    (Mapping, "a table"),
    (datetime.datetime, "a date-time"),
    (datetime.date, "a date"),
    (datetime.time, "a time"),
)


def _type_name(value: Any) -> str:
    return next((name for cls, name in _TYPE_NAMES if isinstance(value, cls)), "a value")


def _shown(value: Any, secret: bool = False) -> str:
    """How a bad value appears in an error: masked when secret, shortened when long."""
    if secret:
        return "'********'"
    text = repr(redact.redact(value) if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any, setting: str, *, secret: bool = False, checked_later: bool = False) -> str:
    """``checked_later``: the caller validates the characters itself (symbols, timeframes)."""
    if not isinstance(value, str):
        raise ConfigError(f"{setting}: expected text, got {_type_name(value)}")
    if not checked_later and any(ord(c) < 32 for c in value):
        raise ConfigError(f"{setting}: {_shown(value, secret)} contains a control character")
    return value.strip()


def _check_url(value: Any, setting: str, *, secret: bool = False) -> str:
    text = _text(value, setting, secret=secret)
    shown = _shown(text, secret)
    try:
        parts = urlsplit(text)
        _ = parts.port
    except ValueError:
        raise ConfigError(f"{setting}: {shown} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting}: {shown} is not an http(s) URL")
    return text.rstrip("/")


def _url(value: Any, setting: str) -> str:
    return _check_url(value, setting)


def _optional_url(value: Any, setting: str) -> str | None:
    return _check_url(value, setting) if _text(value, setting) else None


def _webhook(value: Any, setting: str) -> str | None:
    """The webhook URL is a secret as a whole: an error never shows it."""
    return _check_url(value, setting, secret=True) if _text(value, setting, secret=True) else None


def _items(value: Any, setting: str) -> list[str]:
    """A comma-separated text or a list of texts -> its non-empty items."""
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{setting}: every entry must be text")
        items = [_text(v, setting, checked_later=True) for v in value]
    else:
        items = [v.strip() for v in _text(value, setting, checked_later=True).split(",")]
    if not items or any(not v for v in items):
        raise ConfigError(f"{setting}: {_shown(value)} has an empty entry")
    return items


def parse_symbols(value: Any, setting: str = "symbols") -> tuple[str, ...] | TopN:
    if isinstance(value, str) and value.strip().startswith("top:"):
        parts = value.strip().split(":")
        n = parts[1] if len(parts) in (2, 3) else ""
        if not (n.isascii() and n.isdecimal() and len(n) <= 6 and 0 < int(n) <= 10_000):
            raise ConfigError(
                f"{setting}: {_shown(value)} is not top:N or top:N:QUOTE with 0 < N <= 10000"
            )
        quote = parts[2] if len(parts) == 3 else None
        if quote is not None:
            validate_symbol(f"X/{quote}", setting=setting)
        return TopN(int(parts[1]), quote)
    seen: dict[str, None] = {}
    for item in _items(value, setting):
        seen[validate_symbol(item, setting=setting)] = None
    return tuple(seen)


def parse_timeframes(value: Any, setting: str = "timeframes") -> tuple[Timeframe, ...]:
    tfs = {parse_timeframe(item, setting=setting) for item in _items(value, setting)}
    return tuple(tf for code in ORDER for tf in tfs if tf.code == code)


def _exchange_id(value: Any, setting: str) -> str:
    text = _text(value, setting)
    if not text or not text.replace("_", "").isalnum() or not text.isascii():
        raise ConfigError(f"{setting}: {_shown(value)} is not a ccxt exchange id")
    return text.lower()


def _db_name(value: Any, setting: str) -> str:
    text = _text(value, setting)
    if not text or len(text) > 200 or any(c in text for c in "\"'\\\n\r\t ,=/"):
        raise ConfigError(f"{setting}: {_shown(value)} is not a usable database name")
    return text


def _whole(value: Any, setting: str, low: int, high: int) -> int:
    """A whole number in [low, high], given as a TOML integer or as text."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{setting}: expected a whole number, got {_type_name(value)}")
    text = str(value).strip()
    digits = text.lstrip("+-")
    if not (digits.isascii() and digits.isdecimal()) or len(text) > 12:
        raise ConfigError(f"{setting}: {_shown(value)} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise ConfigError(f"{setting}: {_shown(value)} must be between {low} and {high}")
    return number


def _count(value: Any, setting: str) -> int:
    return _whole(value, setting, 1, 100_000)


def _number(value: Any, setting: str) -> float:
    """A finite number given as a TOML number or as text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{setting}: expected a number, got {_type_name(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{setting}: {_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{setting}: {_shown(value)} is not a finite number")
    return number


def _level(value: Any, setting: str) -> float:
    number = _number(value, setting)
    if not 0.5 <= number < 1.0:
        raise ConfigError(f"{setting}: {_shown(value)} must be in [0.5, 1)")
    return number


def duration(
    value: Any, setting: str, *, high_ms: int = MAX_DURATION_MS, zero: bool = False
) -> int:
    """``90s``, ``5m``, ``6h``, ``3d``, ``2w`` or a number of seconds -> ms in (0, high_ms]
    (``zero``: 0 allowed)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(
            f"{setting}: expected a duration (e.g. 90s, 5m, 6h, 3d, 2w), got {_type_name(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{setting}: {_shown(value)} is not a finite duration")
    if zero and str(value).strip() in ("0", "0s", "0.0"):
        return 0
    try:
        ms = parse_duration(value.strip() if isinstance(value, str) else value, setting=setting)
    except (OverflowError, ValueError):
        ms = high_ms + 1
    if ms > high_ms:
        raise ConfigError(
            f"{setting}: {_shown(value)} is longer than the maximum {high_ms // 1000}s"
        )
    return ms


def _path(value: Any, setting: str) -> Path:
    text = _text(value, setting)
    if not text:
        raise ConfigError(f"{setting}: empty path")
    return Path(text)


def _secret(value: Any, setting: str) -> str | None:
    return _text(value, setting, secret=True) or None


def _optional(value: Any, setting: str) -> str | None:
    return _text(value, setting) or None


def _bounded(high_ms: int, *, zero: bool = False) -> Callable[[Any, str], int]:
    return lambda value, setting: duration(value, setting, high_ms=high_ms, zero=zero)


# --- the resolver ---------------------------------------------------------------------------


class Key(NamedTuple):
    env: str  # environment variable
    path: tuple[str, ...]  # TOML key path
    parse: Callable[[Any, str], Any]  # (raw value, the name shown in errors) -> value


_SIMPLE: dict[str, Key] = {
    "exchange": Key("COINPREDICT_EXCHANGE", ("exchange",), _exchange_id),
    "exchange_url": Key("COINPREDICT_EXCHANGE_URL", ("exchange_url",), _optional_url),
    "symbols": Key("COINPREDICT_SYMBOLS", ("symbols",), parse_symbols),
    "timeframes": Key("COINPREDICT_TIMEFRAMES", ("timeframes",), parse_timeframes),
    "influx_url": Key("COINPREDICT_INFLUX_URL", ("influx", "url"), _url),
    "influx_db": Key("COINPREDICT_INFLUX_DB", ("influx", "db"), _db_name),
    "influx_db_1m": Key("COINPREDICT_INFLUX_DB_1M", ("influx", "db_1m"), _db_name),
    "influx_token": Key("COINPREDICT_INFLUX_TOKEN", ("influx", "token"), _secret),
    "influx_username": Key("COINPREDICT_INFLUX_USERNAME", ("influx", "username"), _optional),
    "influx_password": Key("COINPREDICT_INFLUX_PASSWORD", ("influx", "password"), _secret),
    "state_dir": Key("COINPREDICT_STATE_DIR", ("state_dir",), _path),
    "export_dir": Key("COINPREDICT_EXPORT_DIR", ("export_dir",), _path),
    "metrics_dir": Key("COINPREDICT_METRICS_DIR", ("metrics_dir",), _path),
    "alert_webhook": Key("COINPREDICT_ALERT_WEBHOOK", ("alert_webhook",), _webhook),
    "one_minute_window_ms": Key(
        "COINPREDICT_1M_WINDOW", ("one_minute_window",), _bounded(MAX_DURATION_MS)
    ),
    "history_candles": Key("COINPREDICT_HISTORY_CANDLES", ("history_candles",), _count),
    "interval_level": Key("COINPREDICT_INTERVAL_LEVEL", ("interval_level",), _level),
    "stale_escalate_ms": Key(
        "COINPREDICT_STALE_ESCALATE", ("stale_escalate_after",), _bounded(365 * DAY_MS)
    ),
    "top_refresh_ms": Key("COINPREDICT_TOP_REFRESH", ("top_refresh",), _bounded(365 * DAY_MS)),
    "lock_wait_ms": Key("COINPREDICT_LOCK_WAIT", ("lock_wait",), _bounded(HOUR_MS, zero=True)),
    "exchange_timeout_ms": Key(
        "COINPREDICT_EXCHANGE_TIMEOUT", ("exchange_timeout",), _bounded(10 * MINUTE_MS)
    ),
    "model_keep": Key("COINPREDICT_MODEL_KEEP", ("model_keep",), _count),
}


# What an invalid value given on the command line is called in the error message.
FLAG_NAMES = {
    "symbols": "--symbol",
    "timeframes": "--timeframe",
    "influx_url": "--influx-url",
    "exchange_url": "--exchange-url",
    "state_dir": "--state-dir",
    "export_dir": "--export-dir",
}


def _lookup(table: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = table
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


_POLICY_KEYS = ("grace", "data_hard_limit", "prediction_hard_limit", "horizon", "backfill_start")
_EARLIEST_MS, _LATEST_MS = 0, 4_102_444_800_000  # 1970-01-01 .. 2100-01-01


def _instant(value: Any, setting: str) -> int:
    """A TOML date/date-time or text -> ms (UTC when no offset is given), 1970..2100."""
    if isinstance(value, datetime.datetime | datetime.date):
        value = value.isoformat()
    ms = parse_instant(_text(value, setting), setting=setting)
    if not _EARLIEST_MS <= ms < _LATEST_MS:
        raise ConfigError(f"{setting}: {_shown(value)} is not between 1970 and 2100")
    return ms


def _policy(tf: Timeframe, table: Any, base: TimeframePolicy, prefix: str) -> TimeframePolicy:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{prefix}: expected a table, got {_type_name(table)}")
    unknown = set(table) - set(_POLICY_KEYS)
    if unknown:
        raise ConfigError(f"{prefix}: unknown key(s) {', '.join(sorted(unknown))}")
    if tf.code == "1m" and ("horizon" in table or "prediction_hard_limit" in table):
        raise ConfigError(f"{prefix}: 1m is never a prediction target")
    grace, hard, pred_hard, horizon, start = (
        base.grace_ms,
        base.data_hard_ms,
        base.prediction_hard_ms,
        base.horizon,
        base.backfill_start_ms,
    )
    if "grace" in table:
        grace = duration(table["grace"], f"{prefix}.grace", high_ms=365 * DAY_MS)
    if "data_hard_limit" in table:
        hard = duration(table["data_hard_limit"], f"{prefix}.data_hard_limit")
    if "prediction_hard_limit" in table:
        pred_hard = duration(table["prediction_hard_limit"], f"{prefix}.prediction_hard_limit")
    if "horizon" in table:
        horizon = _whole(table["horizon"], f"{prefix}.horizon", 1, 1000)
    if "backfill_start" in table:
        start = _instant(table["backfill_start"], f"{prefix}.backfill_start")
    policy = TimeframePolicy(grace, hard, pred_hard, horizon, start)
    _check_order(tf, policy, prefix)
    return policy


def _check_order(tf: Timeframe, p: TimeframePolicy, prefix: str) -> None:
    """Thresholds ordered: the fresh limit (one candle + grace) below each hard limit."""
    fresh = (MONTH_MAX_MS if tf.is_monthly else tf.step_ms) + p.grace_ms
    for name, hard in (
        ("data_hard_limit", p.data_hard_ms),
        ("prediction_hard_limit", p.prediction_hard_ms),
    ):
        if hard is not None and hard <= fresh:
            raise ConfigError(
                f"{prefix}.{name}: {hard // 1000}s must be longer than one {tf.code} candle "
                f"plus the grace ({fresh // 1000}s)"
            )


def _policies(toml_policy: Any) -> Mapping[str, TimeframePolicy]:
    if toml_policy is None:
        return DEFAULT_POLICIES
    if not isinstance(toml_policy, Mapping):
        raise ConfigError(
            "policy: expected a table of timeframes ([policy.1h] ...), "
            f"got {_type_name(toml_policy)}"
        )
    result = dict(DEFAULT_POLICIES)
    for code, table in toml_policy.items():
        tf = parse_timeframe(code, setting="policy")
        result[tf.code] = _policy(tf, table, result[tf.code], f"policy.{code}")
    return MappingProxyType(result)


def _credentials_from_url(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Userinfo in the InfluxDB URL is credentials: moved to username/password (unless those
    are set explicitly), never kept in the URL that messages print."""
    url = values.get("influx_url")
    if url is None:
        return
    bare, user, password = redact.split_userinfo(url)
    if bare == url:
        return
    redact.register(password)
    values["influx_url"] = bare
    for name, value in (("influx_username", user), ("influx_password", password)):
        if value is not None and values.get(name) is None:
            values[name] = value
            sources[name] = f"userinfo of influx_url ({sources['influx_url']})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory") from None


def find_config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--config: {str(explicit)!r} does not exist")
        return explicit
    env_path = environ.get("COINPREDICT_CONFIG")
    if env_path:
        path = Path(env_path)
        if not path.is_file():
            raise ConfigError(f"COINPREDICT_CONFIG: {env_path!r} does not exist")
        return path
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


_KNOWN_TOP = {key.path[0] for key in _SIMPLE.values()} | {"policy"}
_KNOWN_INFLUX = {key.path[1] for key in _SIMPLE.values() if key.path[0] == "influx"}


def _check_keys(table: Mapping[str, Any], path: Path | None) -> None:
    unknown = set(table) - _KNOWN_TOP
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    influx_table = table.get("influx", {})
    if not isinstance(influx_table, Mapping):
        raise ConfigError(f"influx in {path}: [influx] must be a table")
    unknown = set(influx_table) - _KNOWN_INFLUX
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) influx.{', influx.'.join(sorted(unknown))}"
        )


def _check_dirs(values: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """The export dir (served to the web) never is, contains or lies inside the state dir
    (credentials' neighbours, locks, models) and is never ``/``; no metrics inside it either."""
    state = Path(os.path.realpath(values.get("state_dir", Settings.state_dir)))
    export = Path(os.path.realpath(values.get("export_dir", Settings.export_dir)))
    name = labels.get("export_dir", "COINPREDICT_EXPORT_DIR")
    shown = _shown(str(values.get("export_dir", Settings.export_dir)))
    if export == Path("/"):
        raise ConfigError(f"{name}: {shown} is the root directory")
    if export == state or export in state.parents or state in export.parents:
        raise ConfigError(
            f"{name}: {shown} must not be, contain or lie inside the state directory "
            f"({labels.get('state_dir', 'COINPREDICT_STATE_DIR')}: "
            f"{_shown(str(values.get('state_dir', Settings.state_dir)))})"
        )
    metrics = values.get("metrics_dir")
    if metrics is not None:
        real = Path(os.path.realpath(metrics))
        if real == export or export in real.parents:
            raise ConfigError(
                f"{labels.get('metrics_dir', 'COINPREDICT_METRICS_DIR')}: "
                f"{_shown(str(metrics))} must not lie inside the export directory"
            )


def load_settings(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve the effective settings. ``flags`` hold only values given on the command line."""
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = find_config_file(config_file, environ)
    table = _read_toml(path) if path else {}
    _check_keys(table, path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    labels: dict[str, str] = {}  # the name each given value is called by in errors
    for name, key in _SIMPLE.items():
        if name in flags:
            raw, labels[name], sources[name] = flags[name], FLAG_NAMES.get(name, name), "flag"
        elif key.env in environ:
            raw, labels[name], sources[name] = environ[key.env], key.env, f"env {key.env}"
        elif (raw := _lookup(table, key.path)) is not None:
            labels[name], sources[name] = f"{'.'.join(key.path)} in {path}", f"file {path}"
        else:
            sources[name] = "default"
            continue
        values[name] = key.parse(raw, labels[name])
    values["policies"] = _policies(table.get("policy"))
    sources["policies"] = f"file {path}" if "policy" in table else "default"
    if values.get("influx_db", "coinpredict") == values.get("influx_db_1m", "coinpredict_1m"):
        raise ConfigError(
            f"{labels.get('influx_db_1m', 'COINPREDICT_INFLUX_DB_1M')}: must differ from "
            f"{labels.get('influx_db', 'COINPREDICT_INFLUX_DB')} "
            "(the 1m database carries the rolling retention)"
        )
    _credentials_from_url(values, sources)
    window = values.get("one_minute_window_ms", 180 * DAY_MS)
    if window < DAY_MS:
        raise ConfigError(
            f"{labels.get('one_minute_window_ms', 'COINPREDICT_1M_WINDOW')}: "
            f"{window // 1000}s is shorter than one day"
        )
    _check_dirs(values, labels)
    return Settings(**values, config_file=path, sources=MappingProxyType(sources))
