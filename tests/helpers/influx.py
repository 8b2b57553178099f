"""A real influxd per test session (no mocked InfluxDB anywhere), fresh databases per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from coinpredict.base.config import Settings, load_settings
from coinpredict.replay.influxd import InfluxProcess, start_influxd
from coinpredict.store.http import InfluxHTTP

_counter = itertools.count()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxProcess]:
    proc = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield proc
    proc.stop()


def fresh_env(influxd: InfluxProcess, db: str, directory: Path) -> dict[str, str]:
    """Settings for databases ``db`` / ``db``_1m and state/export dirs below ``directory``."""
    return {
        "COINPREDICT_INFLUX_URL": influxd.url,
        "COINPREDICT_INFLUX_DB": db,
        "COINPREDICT_INFLUX_DB_1M": f"{db}_1m",
        "COINPREDICT_STATE_DIR": str(directory / "state"),
        "COINPREDICT_EXPORT_DIR": str(directory / "www"),
        "COINPREDICT_CONFIG": "",
    }


@pytest.fixture
def settings_env(influxd: InfluxProcess, tmp_path) -> dict[str, str]:
    """Environment for a CLI run against fresh databases and fresh state/export dirs."""
    return fresh_env(influxd, f"t{next(_counter)}", tmp_path)


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return load_settings(environ=settings_env)


@pytest.fixture
def influx_http(influxd: InfluxProcess) -> Iterator[InfluxHTTP]:
    client = InfluxHTTP(influxd.url)
    yield client
    client.close()
