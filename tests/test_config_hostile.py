"""Config that cannot be fooled: every TOML key and environment value is checked for type,
finite value and range; an error is exit 2 naming the key and the (masked if secret) value,
never a traceback."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from helpers.world import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coinpredict.base import redact
from coinpredict.base.config import _SIMPLE, DAY_MS, load_settings
from coinpredict.base.errors import ConfigError

POLICY_KEYS = ("grace", "data_hard_limit", "prediction_hard_limit", "horizon", "backfill_start")
TOML_KEYS = [".".join(k.path) for k in _SIMPLE.values()] + [
    f"policy.{tf}.{key}" for tf in ("1m", "1h", "1M") for key in POLICY_KEYS
]
ENV_VARS = [k.env for k in _SIMPLE.values()]
SECRET = "Sup3r-Secret-Pw"


@pytest.fixture(autouse=True)
def _isolated_redactor(monkeypatch):
    """Settings register their secrets with the process-wide redactor: keep random ones out of
    the other tests of this worker."""
    monkeypatch.setattr(redact, "_registered", set(redact._registered))
    monkeypatch.setattr(redact, "_pattern", redact._pattern)


@contextlib.contextmanager
def _fresh_redactor():
    """One example's registered secrets never leak into the next (deterministic examples)."""
    saved = set(redact._registered), redact._pattern
    try:
        yield
    finally:
        redact._registered, redact._pattern = saved


def _secret_key(key: str) -> bool:
    return any(word in key.lower() for word in ("password", "token", "webhook"))


def toml_value(value) -> str:
    """A Python value as TOML (inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):  # a TOML basic string: JSON's escapes, DEL escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(key: str, value) -> str:
    *tables, last = key.split(".")
    header = f"[{'.'.join(tables)}]\n" if tables else ""
    return f"{header}{last} = {toml_value(value)}\n"


meaningful = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1e300d",
        "1e308w",
        "1e400s",
        "inf",
        "nan",
        "6h",
        "3d",
        "0s",
        "99999999w",
        "1h,1d",
        "BTC/USDT",
        "top:0",
        "top:3",
        "top:99999999999",
        "top:²",
        "²",
        "/",
        ".",
        "var/state",
        "var/state/www",
        "http://u:p@h:1",
        "http://h:99999",
        "ftp://x",
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "../x",
        "\u00e9",
        "a\u0000b",
        SECRET,
    ]
)
scalars = st.one_of(
    meaningful,
    st.sampled_from([1e308, -1e308, 2**63 - 1]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "1h", "x"]), inner)
    ),
    max_leaves=4,
)


def _load_file(text: str, directory: Path):
    path = directory / "c.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(environ={"COINPREDICT_CONFIG": str(path)})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(TOML_KEYS), value=values)
def test_any_toml_value_for_any_key_is_accepted_or_a_config_error_naming_it(key, value):
    with tempfile.TemporaryDirectory() as tmp, _fresh_redactor():
        try:
            s = _load_file(toml_document(key, value), Path(tmp))
        except ConfigError as exc:
            message = str(exc)
            assert key.split(".")[0] in message or key in message, (key, value, message)
            assert "\n" not in message
            assert not (_secret_key(key) and SECRET in message), message
            return
    # accepted: every value is of its type, finite and in range
    assert all(isinstance(tf.code, str) for tf in s.timeframes)
    for p in s.policies.values():
        assert 0 < p.grace_ms < p.data_hard_ms <= 3650 * DAY_MS
    assert 0 <= s.lock_wait_ms and 0 < s.exchange_timeout_ms and 0.5 <= s.interval_level < 1


@settings(max_examples=300, deadline=None)
@given(var=st.sampled_from(ENV_VARS), value=st.one_of(meaningful, st.text(max_size=20)))
def test_any_environment_value_is_accepted_or_a_config_error_naming_it(var, value):
    value = value.replace("\x00", "")  # the environment cannot carry NUL
    try:
        with _fresh_redactor():
            load_settings(environ={"COINPREDICT_CONFIG": "", var: value})
    except ConfigError as exc:
        assert var in str(exc), (var, value, str(exc))
        assert not (_secret_key(var) and SECRET in str(exc)), str(exc)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('state_dir = ["/srv/x"]', {}, "state_dir in {file}: expected text, got a list"),
        (
            "one_minute_window = inf",
            {},
            "one_minute_window in {file}: inf is not a finite duration",
        ),
        (
            "one_minute_window = nan",
            {},
            "one_minute_window in {file}: nan is not a finite duration",
        ),
        (
            "top_refresh = 1979-05-27",
            {},
            "top_refresh in {file}: expected a duration (e.g. 90s, 5m, 6h, 3d, 2w), got a date",
        ),
        ("export_dir = 5", {}, "export_dir in {file}: expected text, got a number"),
        (
            "[influx]\npassword = 12345",
            {},
            "influx.password in {file}: expected text, got a number",
        ),
        (
            "",
            {"COINPREDICT_1M_WINDOW": "1e300d"},
            "COINPREDICT_1M_WINDOW: '1e300d' is longer than the maximum 315360000s",
        ),
        (
            '[policy.1h]\ngrace = "2h"\nprediction_hard_limit = "3h"',
            {},
            "policy.1h.prediction_hard_limit: 10800s must be longer than one 1h candle plus the "
            "grace (10800s)",
        ),
        (
            "",
            {"COINPREDICT_ALERT_WEBHOOK": f"ftp://hooks.example/{SECRET}"},
            "COINPREDICT_ALERT_WEBHOOK: '********' is not an http(s) URL",
        ),
        (
            "",
            {"COINPREDICT_INFLUX_URL": f"http://admin:{SECRET}@db:99999"},
            "COINPREDICT_INFLUX_URL: 'http://***@db:99999' has an invalid port",
        ),
    ],
)
def test_named_bad_values(tmp_path, toml, env, message):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"COINPREDICT_CONFIG": str(path), **env})
    assert str(err.value) == message.format(file=path)


@pytest.mark.parametrize(
    ("state", "export"),
    [("/srv/cp", "/srv/cp"), ("/srv/cp", "/srv/cp/www"), ("/srv/cp/state", "/srv/cp"), ("/s", "/")],
)
def test_export_dir_never_overlaps_the_state_dir_nor_is_root(state, export):
    env = {
        "COINPREDICT_CONFIG": "",
        "COINPREDICT_STATE_DIR": state,
        "COINPREDICT_EXPORT_DIR": export,
    }
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert str(err.value).startswith(f"COINPREDICT_EXPORT_DIR: '{export}' ")


def test_export_dir_through_a_symlink_into_the_state_dir_is_refused(tmp_path):
    (tmp_path / "state" / "www").mkdir(parents=True)
    (tmp_path / "www").symlink_to(tmp_path / "state" / "www")
    env = {
        "COINPREDICT_CONFIG": "",
        "COINPREDICT_STATE_DIR": str(tmp_path / "state"),
        "COINPREDICT_EXPORT_DIR": str(tmp_path / "www"),
    }
    with pytest.raises(ConfigError, match="must not be, contain or lie inside the state"):
        load_settings(environ=env)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('state_dir = ["/srv/x"]', "state_dir"),
        ("one_minute_window = inf", "one_minute_window"),
        ("[influx]\nurl = 1979-05-27T07:32:00Z", "influx.url"),
        ('export_dir = "/"', "export_dir"),
    ],
)
def test_cli_exits_2_with_one_line_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")}
    got = run_cli(["--config", str(path), "config"], env)
    assert got.returncode == 2 and got.stdout == ""
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key} in {path}: "), got.stderr
