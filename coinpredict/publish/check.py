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
    p: list[str] = []
    want_lcc = iso(fc.last_closed_ms)
    if doc.get("last_closed_candle") != want_lcc:
        p.append(
            f"last_closed_candle: {doc.get('last_closed_candle')!r}, InfluxDB has {want_lcc!r}"
        )
    raw_model = doc.get("model")
    model: dict[str, Any] = raw_model if isinstance(raw_model, dict) else {}
    if model.get("name") != fc.model_name:
        p.append(f"model.name: {model.get('name')!r}, InfluxDB has {fc.model_name!r}")
    if model.get("version") != fc.model_version:
        p.append(f"model.version: {model.get('version')!r}, InfluxDB has {fc.model_version!r}")
    if doc.get("interval") != fc.level:
        p.append(f"interval: {doc.get('interval')!r}, InfluxDB has {fc.level!r}")
    if len(preds) != len(fc.timestamps):
        p.append(f"predictions: {len(preds)} steps, InfluxDB has {len(fc.timestamps)}")
    series_values = {
        "close": fc.close,
        "lower": fc.lower,
        "upper": fc.upper,
        "lower_95": fc.lower_95,
        "upper_95": fc.upper_95,
    }
    for i, entry in enumerate(preds[: len(fc.timestamps)]):
        if not isinstance(entry, dict):
            continue
        want_ts = iso(fc.timestamps[i])
        if entry.get("timestamp") != want_ts:
            p.append(
                f"predictions[{i}].timestamp: {entry.get('timestamp')!r}, InfluxDB has {want_ts!r}"
            )
        for key, values in series_values.items():
            if key not in entry and key.endswith("_95"):
                continue
            got = entry.get(key)
            if isinstance(got, bool) or not isinstance(got, int | float) or got != values[i]:
                p.append(f"predictions[{i}].{key}: {got!r}, InfluxDB has {values[i]!r}")
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
                path = directory / name
                result.checked.append(name)
                try:
                    doc, problem = read_doc(path)
                except FileNotFoundError:
                    result.problems.append(f"{name}: missing (run `coinpredict export`)")
                    continue
                if problem is not None:
                    result.problems.append(problem)
                    continue
                if name.startswith("history_"):
                    found = validate_history_doc(doc, s)
                else:
                    found = validate_prediction_doc(doc, s)
                    if not found:
                        found = smoke_check_predictions(doc, s.timeframe)
                    if not found:
                        try:
                            fc = store.latest(s)
                        except (KeyError, IndexError, TypeError, ValueError) as exc:
                            found = [f"InfluxDB forecast of {s} is unreadable: {exc}"]
                        else:
                            found = compare_forecast(doc, fc)
                result.problems += [f"{name}: {msg}" for msg in found]
    finally:
        if own:
            client.close()
    for name in (MANIFEST, STATUS):
        result.checked.append(name)
        try:
            doc, problem = read_doc(directory / name)
        except FileNotFoundError:
            result.problems.append(f"{name}: missing (run `coinpredict export`)")
            continue
        if problem is not None:
            result.problems.append(problem)
        elif not isinstance(doc, dict) or "generated_at" not in doc:
            result.problems.append(f"{name}: generated_at: missing")
        elif name == MANIFEST:
            for i, art in enumerate(doc.get("artifacts") or []):
                file = art.get("file") if isinstance(art, dict) else None
                if not isinstance(file, str) or "/" in file or file.startswith("."):
                    result.problems.append(f"{name}: artifacts[{i}].file: {file!r} is invalid")
                elif art.get("generated_at") and not (directory / file).exists():
                    result.problems.append(f"{name}: artifacts[{i}].file: {file} does not exist")
    return result
