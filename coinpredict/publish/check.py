"""``coinpredict check``: are the exported files what InfluxDB says, and do they look sane?

(a) consistency: every served prediction equals InfluxDB's latest champion forecast of that
    series (read with :meth:`PredictionStore.latest`, independently of the export's reader):
    ``last_closed_candle``, ``model``, ``interval`` and every step's timestamp and values;
(b) future values: ``predictions[0].timestamp`` is the next boundary after
    ``last_closed_candle``, the steps follow the timeframe grid, values are finite and positive
    and ``lower <= close <= upper``;
plus the schema of every prediction and history file and of manifest.json / status.json.
Each problem names the file and the field. Exit 1 on any problem, 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.errors import ExitCode
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.health.collect import configured_series, health_http
from coinpredict.health.exported import (
    MANIFEST,
    STATUS,
    history_name,
    prediction_name,
    read_doc,
    smoke_check_predictions,
    validate_history_doc,
    validate_prediction_doc,
)
from coinpredict.health.freshness import BLOCKED
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.predictions import PredictionStore, StoredForecast


@dataclass
class CheckResult:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return ExitCode.FAILURE if self.problems else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "exit_code": int(self.exit_code),
            "checked": self.checked,
            "problems": self.problems,
        }


def compare_forecast(doc: dict[str, Any], fc: StoredForecast | None) -> list[str]:
    """Field-by-field differences between a prediction file and InfluxDB's forecast."""
    preds = doc.get("predictions") or []
    if fc is None:
        if preds:
            return ["predictions: served, but InfluxDB holds no champion forecast for the series"]
        return []
    if not preds:
        if doc.get("freshness") not in BLOCKED:
            return [
                f"predictions: empty while freshness is {doc.get('freshness')!r} and InfluxDB "
                f"holds a forecast from {iso(fc.last_closed_ms)}"
            ]
        return []
    p = _compare_header(doc, fc)
    if len(preds) != len(fc.timestamps):
        p.append(f"predictions: {len(preds)} steps, InfluxDB has {len(fc.timestamps)}")
    for i, entry in enumerate(preds[: len(fc.timestamps)]):
        if isinstance(entry, dict):
            p += _compare_step(i, entry, fc)
    return p


def _compare_header(doc: dict[str, Any], fc: StoredForecast) -> list[str]:
    raw_model = doc.get("model")
    model: dict[str, Any] = raw_model if isinstance(raw_model, dict) else {}
    pairs = (
        ("last_closed_candle", doc.get("last_closed_candle"), iso(fc.last_closed_ms)),
        ("model.name", model.get("name"), fc.model_name),
        ("model.version", model.get("version"), fc.model_version),
        ("interval", doc.get("interval"), fc.level),
    )
    return [f"{key}: {got!r}, InfluxDB has {want!r}" for key, got, want in pairs if got != want]


def _compare_step(i: int, entry: dict[str, Any], fc: StoredForecast) -> list[str]:
    p: list[str] = []
    want_ts = iso(fc.timestamps[i])
    if entry.get("timestamp") != want_ts:
        p.append(
            f"predictions[{i}].timestamp: {entry.get('timestamp')!r}, InfluxDB has {want_ts!r}"
        )
    values = {
        "close": fc.close,
        "lower": fc.lower,
        "upper": fc.upper,
        "lower_95": fc.lower_95,
        "upper_95": fc.upper_95,
    }
    for key, column in values.items():
        if key not in entry and key.endswith("_95"):
            continue
        got = entry.get(key)
        if isinstance(got, bool) or not isinstance(got, int | float) or got != column[i]:
            p.append(f"predictions[{i}].{key}: {got!r}, InfluxDB has {column[i]!r}")
    return p


def run_check(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    http: InfluxHTTP | None = None,
) -> CheckResult:
    """Check every exported file of the (configured) series. InfluxDB down raises (exit 1)."""
    chosen = list(series) if series is not None else configured_series(settings, clock)
    directory = settings.export_dir
    result = CheckResult()
    own = http is None
    client = http or health_http(settings)
    store = PredictionStore(client, db=settings.influx_db)
    try:
        for s in chosen:
            names = [history_name(s)] + ([prediction_name(s)] if s.timeframe.code != "1m" else [])
            for name in names:
                result.checked.append(name)
                doc = _read(directory, name, result)
                if doc is not None:
                    result.problems += [f"{name}: {m}" for m in _series_file(name, doc, s, store)]
    finally:
        if own:
            client.close()
    for name in (MANIFEST, STATUS):
        result.checked.append(name)
        doc = _read(directory, name, result)
        if doc is not None:
            result.problems += _summary_file(directory, name, doc)
    return result


def _read(directory: Path, name: str, result: CheckResult) -> Any:
    """The parsed file, or None with its problem noted (missing, unreadable, invalid JSON)."""
    try:
        doc, problem = read_doc(directory / name)
    except FileNotFoundError:
        result.problems.append(f"{name}: missing (run `coinpredict export`)")
        return None
    if problem is not None:
        result.problems.append(problem)
        return None
    return doc


def _series_file(name: str, doc: Any, s: Series, store: PredictionStore) -> list[str]:
    """A history file against its schema; a prediction file against its schema, sane future
    values and InfluxDB's newest forecast."""
    if name.startswith("history_"):
        return validate_history_doc(doc, s)
    found = validate_prediction_doc(doc, s) or smoke_check_predictions(doc, s.timeframe)
    if found:
        return found
    try:
        fc = store.latest(s)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return [f"InfluxDB forecast of {s} is unreadable: {exc}"]
    return compare_forecast(doc, fc)


def _summary_file(directory: Path, name: str, doc: Any) -> list[str]:
    if not isinstance(doc, dict) or "generated_at" not in doc:
        return [f"{name}: generated_at: missing"]
    if name != MANIFEST:
        return []
    p = []
    for i, art in enumerate(doc.get("artifacts") or []):
        file = art.get("file") if isinstance(art, dict) else None
        if not isinstance(file, str) or "/" in file or file.startswith("."):
            p.append(f"{name}: artifacts[{i}].file: {file!r} is invalid")
        elif art.get("generated_at") and not (directory / file).exists():
            p.append(f"{name}: artifacts[{i}].file: {file} does not exist")
    return p
