"""Settings: one frozen dataclass, resolved once.

Precedence: command-line flags > ``COINPREDICT_*`` environment > TOML file > defaults (SPEC
section 2). Every value is validated here, so an invalid setting stops the command with exit 2
before anything is touched, and the message names the setting and the value. ``sources`` records
where each effective value came from, for ``coinpredict config``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
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
    """Per-timeframe thresholds and sizes (SPEC section 6 defaults)."""

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


def _check_url(value: str, setting: str) -> str:
    shown = redact.redact(value)
    try:
        parts = urlsplit(value.strip())
        _ = parts.port
    except ValueError:
        raise ConfigError(f"{setting}: {shown!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting}: {shown!r} is not an http(s) URL")
    return value.strip().rstrip("/")


def _split(value: Any, setting: str) -> list[str]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        raise ConfigError(f"{setting}: {value!r} is not a comma-separated list")
    if not items or any(not v for v in items):
        raise ConfigError(f"{setting}: {value!r} has an empty entry")
    return items


def parse_symbols(value: Any, setting: str = "symbols") -> tuple[str, ...] | TopN:
    if isinstance(value, str) and value.strip().startswith("top:"):
        parts = value.strip().split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) <= 0:
            raise ConfigError(f"{setting}: {value!r} is not top:N or top:N:QUOTE with N > 0")
        quote = parts[2] if len(parts) == 3 else None
        if quote is not None:
            validate_symbol(f"X/{quote}", setting=setting)
        return TopN(int(parts[1]), quote)
    items = _split(value, setting)
    seen: dict[str, None] = {}
    for item in items:
        seen[validate_symbol(item, setting=setting)] = None
    return tuple(seen)


def parse_timeframes(value: Any, setting: str = "timeframes") -> tuple[Timeframe, ...]:
    tfs = {parse_timeframe(item, setting=setting) for item in _split(value, setting)}
    return tuple(tf for code in ORDER for tf in tfs if tf.code == code)


def _db_name(value: Any, setting: str) -> str:
    text = str(value).strip()
    if not text or any(c in text for c in "\"'\\\n\r\t ,=/"):
        raise ConfigError(f"{setting}: {value!r} is not a usable database name")
    return text


def _positive_int(value: Any, setting: str, *, low: int = 1, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{setting}: {value!r} is not a whole number") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{setting}: {value!r} must be {bound}")
    return number


def _level(value: Any, setting: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{setting}: {value!r} is not a number") from None
    if not 0.5 <= number < 1.0:
        raise ConfigError(f"{setting}: {value!r} must be in [0.5, 1)")
    return number


def _optional(value: Any, setting: str = "") -> str | None:
    text = str(value).strip()
    return text or None


# --- the resolver ---------------------------------------------------------------------------

# setting name -> (environment variable, TOML key path, parser)
_SIMPLE: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "exchange": ("COINPREDICT_EXCHANGE", ("exchange",), None),
    "exchange_url": ("COINPREDICT_EXCHANGE_URL", ("exchange_url",), "url?"),
    "symbols": ("COINPREDICT_SYMBOLS", ("symbols",), parse_symbols),
    "timeframes": ("COINPREDICT_TIMEFRAMES", ("timeframes",), parse_timeframes),
    "influx_url": ("COINPREDICT_INFLUX_URL", ("influx", "url"), "url"),
    "influx_db": ("COINPREDICT_INFLUX_DB", ("influx", "db"), _db_name),
    "influx_db_1m": ("COINPREDICT_INFLUX_DB_1M", ("influx", "db_1m"), _db_name),
    "influx_token": ("COINPREDICT_INFLUX_TOKEN", ("influx", "token"), _optional),
    "influx_username": ("COINPREDICT_INFLUX_USERNAME", ("influx", "username"), _optional),
    "influx_password": ("COINPREDICT_INFLUX_PASSWORD", ("influx", "password"), _optional),
    "state_dir": ("COINPREDICT_STATE_DIR", ("state_dir",), "path"),
    "export_dir": ("COINPREDICT_EXPORT_DIR", ("export_dir",), "path"),
    "metrics_dir": ("COINPREDICT_METRICS_DIR", ("metrics_dir",), "path"),
    "alert_webhook": ("COINPREDICT_ALERT_WEBHOOK", ("alert_webhook",), "url?"),
    "one_minute_window_ms": ("COINPREDICT_1M_WINDOW", ("one_minute_window",), "duration"),
    "history_candles": ("COINPREDICT_HISTORY_CANDLES", ("history_candles",), "count"),
    "interval_level": ("COINPREDICT_INTERVAL_LEVEL", ("interval_level",), _level),
    "stale_escalate_ms": ("COINPREDICT_STALE_ESCALATE", ("stale_escalate_after",), "duration"),
    "top_refresh_ms": ("COINPREDICT_TOP_REFRESH", ("top_refresh",), "duration"),
    "lock_wait_ms": ("COINPREDICT_LOCK_WAIT", ("lock_wait",), "duration0"),
    "exchange_timeout_ms": ("COINPREDICT_EXCHANGE_TIMEOUT", ("exchange_timeout",), "duration"),
    "model_keep": ("COINPREDICT_MODEL_KEEP", ("model_keep",), "count"),
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


def _convert(name: str, parser: Any, value: Any, setting: str | None = None) -> Any:
    setting = setting or _SIMPLE[name][0]
    if parser is None:
        text = str(value).strip()
        if not text or not text.replace("_", "").isalnum():
            raise ConfigError(f"{setting}: {value!r} is not a ccxt exchange id")
        return text.lower()
    if parser == "url":
        return _check_url(str(value), setting)
    if parser == "url?":
        text = str(value).strip()
        return _check_url(text, setting) if text else None
    if parser == "path":
        text = str(value).strip()
        if not text:
            raise ConfigError(f"{setting}: empty path")
        return Path(text)
    if parser == "duration":
        return parse_duration(value, setting=setting)
    if parser == "duration0":
        if str(value).strip() in ("0", "0s"):
            return 0
        return parse_duration(value, setting=setting)
    if parser == "count":
        return _positive_int(value, setting, high=100_000)
    return parser(value, setting)


def _lookup(table: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = table
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _policies(toml_policy: Any) -> Mapping[str, TimeframePolicy]:
    if toml_policy is None:
        return DEFAULT_POLICIES
    if not isinstance(toml_policy, Mapping):
        raise ConfigError("policy: expected a table of timeframes ([policy.1h] ...)")
    result = dict(DEFAULT_POLICIES)
    allowed = {"grace", "data_hard_limit", "prediction_hard_limit", "horizon", "backfill_start"}
    for code, table in toml_policy.items():
        tf = parse_timeframe(code, setting="policy")
        if not isinstance(table, Mapping):
            raise ConfigError(f"policy.{code}: expected a table")
        unknown = set(table) - allowed
        if unknown:
            raise ConfigError(f"policy.{code}: unknown key(s) {', '.join(sorted(unknown))}")
        base = result[tf.code]
        prefix = f"policy.{code}"
        grace = parse_duration(table.get("grace", base.grace_ms / 1000), setting=f"{prefix}.grace")
        hard = parse_duration(
            table.get("data_hard_limit", base.data_hard_ms / 1000),
            setting=f"{prefix}.data_hard_limit",
        )
        pred_hard = base.prediction_hard_ms
        if "prediction_hard_limit" in table:
            pred_hard = parse_duration(
                table["prediction_hard_limit"], setting=f"{prefix}.prediction_hard_limit"
            )
        horizon = base.horizon
        if "horizon" in table:
            horizon = _positive_int(table["horizon"], f"{prefix}.horizon", high=1000)
        start = base.backfill_start_ms
        if "backfill_start" in table:
            start = parse_instant(str(table["backfill_start"]), setting=f"{prefix}.backfill_start")
        if tf.code == "1m" and ("horizon" in table or "prediction_hard_limit" in table):
            raise ConfigError(f"{prefix}: 1m is never a prediction target")
        result[tf.code] = TimeframePolicy(grace, hard, pred_hard, horizon, start)
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


_KNOWN_TOP = {path[0] for _, path, _ in _SIMPLE.values()} | {"policy"}
_KNOWN_INFLUX = {path[1] for _, path, _ in _SIMPLE.values() if path[0] == "influx"}


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
    unknown = set(table) - _KNOWN_TOP
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    influx_table = table.get("influx", {})
    if not isinstance(influx_table, Mapping):
        raise ConfigError(f"config file {path}: [influx] must be a table")
    unknown = set(influx_table) - _KNOWN_INFLUX
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) influx.{', influx.'.join(sorted(unknown))}"
        )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (env, key_path, parser) in _SIMPLE.items():
        if name in flags:
            values[name] = _convert(name, parser, flags[name], FLAG_NAMES.get(name, name))
            sources[name] = "flag"
        elif env in environ:
            values[name] = _convert(name, parser, environ[env])
            sources[name] = f"env {env}"
        elif (raw := _lookup(table, key_path)) is not None:
            values[name] = _convert(name, parser, raw, f"{'.'.join(key_path)} in {path}")
            sources[name] = f"file {path}"
        else:
            sources[name] = "default"
    values["policies"] = _policies(table.get("policy"))
    sources["policies"] = f"file {path}" if "policy" in table else "default"
    if values.get("influx_db", "coinpredict") == values.get("influx_db_1m", "coinpredict_1m"):
        raise ConfigError(
            "COINPREDICT_INFLUX_DB_1M: must differ from COINPREDICT_INFLUX_DB "
            "(the 1m database carries the rolling retention)"
        )
    _credentials_from_url(values, sources)
    window = values.get("one_minute_window_ms", 180 * DAY_MS)
    if window < DAY_MS:
        raise ConfigError(f"COINPREDICT_1M_WINDOW: {window // 1000}s is shorter than one day")
    return Settings(**values, config_file=path, sources=MappingProxyType(sources))
