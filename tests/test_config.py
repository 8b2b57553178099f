from pathlib import Path

import pytest

from coinpredict.base.config import TopN, load_settings
from coinpredict.base.errors import ConfigError, ExitCode


def test_defaults():
    s = load_settings(environ={})
    assert s.exchange == "binance"
    assert s.symbols == ("BTC/USDT",)
    assert [tf.code for tf in s.timeframes] == ["1h"]
    assert s.influx_url == "http://127.0.0.1:8086"
    assert (s.influx_db, s.influx_db_1m) == ("coinpredict", "coinpredict_1m")
    assert s.state_dir == Path("var/state") and s.export_dir == Path("var/www")
    assert s.policy(s.timeframes[0]).horizon == 24


def test_precedence_flag_env_file_default(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'exchange = "kraken"\nsymbols = ["ETH/USDT"]\ntimeframes = "1d"\n'
        '[influx]\nurl = "http://db:8086"\n[policy.1h]\ngrace = "10m"\n'
    )
    env = {"COINPREDICT_SYMBOLS": "SOL/USDT", "COINPREDICT_CONFIG": str(cfg)}
    s = load_settings(environ=env, flags={"symbols": ["ADA/USDT"]})
    assert s.symbols == ("ADA/USDT",)
    assert s.sources["symbols"] == "flag"
    s = load_settings(environ=env)
    assert s.symbols == ("SOL/USDT",) and s.sources["symbols"] == "env COINPREDICT_SYMBOLS"
    assert s.exchange == "kraken" and s.sources["exchange"] == f"file {cfg}"
    assert s.influx_url == "http://db:8086"
    assert s.policies["1h"].grace_ms == 600_000
    assert s.sources["influx_db"] == "default"


def test_top_n_and_timeframe_order():
    s = load_settings(
        environ={"COINPREDICT_SYMBOLS": "top:5:USDT", "COINPREDICT_TIMEFRAMES": "1M,1d,1m,1h,1w,1h"}
    )
    assert s.symbols == TopN(5, "USDT")
    assert [tf.code for tf in s.timeframes] == ["1m", "1h", "1d", "1w", "1M"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COINPREDICT_TIMEFRAMES": "1h,5m"},
            "COINPREDICT_TIMEFRAMES: unknown timeframe '5m' (expected one of 1m, 1h, 1d, 1w, 1M)",
        ),
        (
            {"COINPREDICT_SYMBOLS": 'BTC"/USDT'},
            "COINPREDICT_SYMBOLS: 'BTC\"/USDT' is not a safe spot symbol (expected BASE/QUOTE in "
            "upper-case letters and digits, e.g. BTC/USDT)",
        ),
        (
            {"COINPREDICT_SYMBOLS": "BTC/USDT\nX"},
            "COINPREDICT_SYMBOLS: 'BTC/USDT\\nX' is not a safe spot symbol (expected BASE/QUOTE in "
            "upper-case letters and digits, e.g. BTC/USDT)",
        ),
        (
            {"COINPREDICT_SYMBOLS": "../../etc/USDT"},
            "COINPREDICT_SYMBOLS: '../../etc/USDT' is not a safe spot symbol (expected BASE/QUOTE in "
            "upper-case letters and digits, e.g. BTC/USDT)",
        ),
        (
            {"COINPREDICT_SYMBOLS": "top:0"},
            "COINPREDICT_SYMBOLS: 'top:0' is not top:N or top:N:QUOTE with 0 < N <= 10000",
        ),
        (
            {"COINPREDICT_INFLUX_URL": "ftp://x"},
            "COINPREDICT_INFLUX_URL: 'ftp://x' is not an http(s) URL",
        ),
        (
            {"COINPREDICT_INFLUX_URL": "http://x:99999"},
            "COINPREDICT_INFLUX_URL: 'http://x:99999' has an invalid port",
        ),
        (
            {"COINPREDICT_1M_WINDOW": "0d"},
            "COINPREDICT_1M_WINDOW: duration must be positive, got '0d'",
        ),
        (
            {"COINPREDICT_INFLUX_DB_1M": "coinpredict"},
            "COINPREDICT_INFLUX_DB_1M: must differ from COINPREDICT_INFLUX_DB (the 1m database carries "
            "the rolling retention)",
        ),
        (
            {"COINPREDICT_INFLUX_DB": 'a"b'},
            "COINPREDICT_INFLUX_DB: 'a\"b' is not a usable database name",
        ),
        (
            {"COINPREDICT_INTERVAL_LEVEL": "1.5"},
            "COINPREDICT_INTERVAL_LEVEL: '1.5' must be in [0.5, 1)",
        ),
    ],
)
def test_invalid_values_name_setting_and_value(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert str(info.value) == message
    assert info.value.exit_code == ExitCode.USAGE


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("exchange = \n")
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        load_settings(environ={"COINPREDICT_CONFIG": str(bad)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('exchnage = "binance"\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) exchnage$"):
        load_settings(environ={"COINPREDICT_CONFIG": str(unknown)})
    with pytest.raises(ConfigError, match=r"^COINPREDICT_CONFIG: '/nope.toml' does not exist$"):
        load_settings(environ={"COINPREDICT_CONFIG": "/nope.toml"})
    pol = tmp_path / "pol.toml"
    pol.write_text("[policy.1m]\nhorizon = 5\n")
    with pytest.raises(ConfigError, match=r"^policy.1m: 1m is never a prediction target$"):
        load_settings(environ={"COINPREDICT_CONFIG": str(pol)})


def test_secrets_masked():
    s = load_settings(
        environ={"COINPREDICT_INFLUX_TOKEN": "s3cret", "COINPREDICT_INFLUX_PASSWORD": "pw"}
    )
    public = s.public_dict()
    assert public["influx_token"] == "********" and public["influx_password"] == "********"
    assert "s3cret" not in repr(public)


def test_errors_name_where_the_value_came_from(tmp_path):
    with pytest.raises(ConfigError, match=r"^--symbol: '\.\./x/USDT' is not a safe spot symbol"):
        load_settings(environ={}, flags={"symbols": ["../x/USDT"]})
    cfg = tmp_path / "c.toml"
    cfg.write_text('timeframes = "2h"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"COINPREDICT_CONFIG": str(cfg)})
    assert str(info.value) == (
        f"timeframes in {cfg}: unknown timeframe '2h' (expected one of 1m, 1h, 1d, 1w, 1M)"
    )
