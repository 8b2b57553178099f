"""``coinpredict init``: create (1.x) or check (2.x / 3.x) the databases and the 1m retention."""

from __future__ import annotations

from dataclasses import dataclass, field

from coinpredict.base.config import Settings
from coinpredict.base.timeframes import DAY_MS
from coinpredict.local.state import ensure_dir
from coinpredict.store.escape import ident
from coinpredict.store.http import InfluxHTTP

RP_1M = "rolling"
RP_MAIN = "forever"
MAIN_SHARD = "52w"
# A week per 1m shard: 26 shards for 180 days instead of 180 one-day shards, each with its own
# cache, index and files (the soak measured this on a 1 GB VM, docs/scaling.md). A shorter 1m
# window gets shards as long as the window (InfluxDB refuses shards longer than the retention).
SHARD_1M_MS = 7 * DAY_MS


def _shard_1m(window_ms: int) -> str:
    return _duration(min(SHARD_1M_MS, window_ms))


@dataclass
class InitResult:
    server_version: str
    actions: list[str] = field(default_factory=list)  # what was created or changed
    todo: list[str] = field(default_factory=list)  # what the operator must create (2.x / 3.x)

    @property
    def ok(self) -> bool:
        return not self.todo


def _duration(ms: int) -> str:
    return f"{ms // DAY_MS}d" if ms % DAY_MS == 0 else f"{ms // 3_600_000}h"


def _major(version: str) -> int:
    digits = version.lstrip("v").split(".", 1)[0]
    return int(digits) if digits.isdigit() else 1


def _retention_policies(http: InfluxHTTP, db: str) -> dict[str, tuple[str, str, bool]]:
    found = http.query(f"SHOW RETENTION POLICIES ON {ident(db)}")
    out = {}
    for series in found:
        cols = series["columns"]
        for row in series.get("values", []):
            rec = dict(zip(cols, row, strict=False))
            out[rec["name"]] = (rec["duration"], rec.get("shardGroupDuration", ""), rec["default"])
    return out


def _same_duration(influx_text: str, ms: int) -> bool:
    """InfluxDB prints durations like ``4320h0m0s``."""
    hours = ms // 3_600_000
    return influx_text.startswith(f"{hours}h0m0s") or (hours == 0 and influx_text == "0s")


def init_storage(settings: Settings, http: InfluxHTTP) -> InitResult:
    ensure_dir(settings.state_dir, "the state directory")
    ensure_dir(settings.export_dir, "the export directory")
    version = http.ping()
    result = InitResult(server_version=version)
    databases = {row[0] for s in http.query("SHOW DATABASES") for row in s.get("values", [])}
    window = settings.one_minute_window_ms
    if _major(version) >= 2:
        for db, note in (
            (settings.influx_db, "retention: infinite"),
            (settings.influx_db_1m, f"retention: {_duration(window)}"),
        ):
            if db not in databases:
                result.todo.append(
                    f"create database/bucket {db!r} ({note}) and, on 2.x, a DBRP mapping for it "
                    "(see docs/influxdb.md)"
                )
        return result

    if settings.influx_db not in databases:
        http.query(
            f"CREATE DATABASE {ident(settings.influx_db)} WITH SHARD DURATION {MAIN_SHARD} "
            f"NAME {ident(RP_MAIN)}",
            write=True,
        )
        result.actions.append(
            f"created database {settings.influx_db!r} (kept forever, {MAIN_SHARD} shards)"
        )
    if settings.influx_db_1m not in databases:
        http.query(
            f"CREATE DATABASE {ident(settings.influx_db_1m)} WITH DURATION "
            f"{_duration(window)} SHARD DURATION {_shard_1m(window)} NAME {ident(RP_1M)}",
            write=True,
        )
        result.actions.append(
            f"created database {settings.influx_db_1m!r} "
            f"(retention {_duration(window)}, {_shard_1m(window)} shards)"
        )
    else:
        rps = _retention_policies(http, settings.influx_db_1m)
        current = rps.get(RP_1M)
        if current is None:
            http.query(
                f"CREATE RETENTION POLICY {ident(RP_1M)} ON {ident(settings.influx_db_1m)} "
                f"DURATION {_duration(window)} REPLICATION 1 "
                f"SHARD DURATION {_shard_1m(window)} DEFAULT",
                write=True,
            )
            result.actions.append(
                f"added retention policy {RP_1M!r} "
                f"({_duration(window)}) on {settings.influx_db_1m!r}"
            )
        elif not _same_duration(current[0], window) or not current[2]:
            http.query(
                f"ALTER RETENTION POLICY {ident(RP_1M)} ON {ident(settings.influx_db_1m)} "
                f"DURATION {_duration(window)} DEFAULT",
                write=True,
            )
            result.actions.append(
                f"set retention of {settings.influx_db_1m!r} to {_duration(window)}"
            )
    return result
