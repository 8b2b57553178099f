"""``coinpredict export``: the published JSON files, every one replaced atomically.

Per series: ``history_{SYMBOL}_{TF}.json`` (every timeframe) and ``prediction_{SYMBOL}_{TF}.json``
(not 1m); then ``status.json`` (the public view of ``status --json``) and last ``manifest.json``
(so the manifest only names files that exist). The freshness published comes from the one
evaluator (coinpredict.health), evaluated at export time: a late or failed ingest never stops
export from publishing that the series went stale. A stale series is served with a warning; a
hard_stale, corrupt or unknown one carries ``predictions: []`` and says why. A failed predict run
leaves the last good forecast (the latest in InfluxDB) served with ``degraded: true``.

Temporary files (``.NAME.RANDOM.tmp``) that a killed export left are swept at the start of the
next one (it holds the export lock, so any temp file older than its start is a leftover).

Export always completes when the export directory is writable: a series that cannot be read is
published as ``unknown`` (blocked; its previous history file is kept) and ``manifest.json`` and
``status.json`` are written on every run, also when InfluxDB is unreachable.

Exit codes: 0 done (whatever the freshness), 4 some series could not be read, 1 every series
could not be read (InfluxDB unreachable) or the export directory is unwritable (one line; files
already in place stay intact: every write is atomic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import ArtifactError, HealthCode
from coinpredict.base.outcomes import RunSummary, code_for, outcome_word
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.health.collect import (
    READ_THREADS,
    Collected,
    collect,
    configured_series,
    evaluation_from,
)
from coinpredict.health.exported import (
    MANIFEST,
    SCHEMA_VERSION,
    STATUS,
    history_name,
    prediction_name,
)
from coinpredict.health.freshness import UNKNOWN, Evaluation, SeriesFacts, SeriesHealth
from coinpredict.health.status import HEALTH_WORDS, job_histories, jobs_summary
from coinpredict.local import atomic
from coinpredict.local.state import ensure_dir
from coinpredict.publish.artifacts import dumps, history_bytes, prediction_doc, public_status
from coinpredict.store.http import InfluxHTTP
from coinpredict.store.latest import CandleRow
from coinpredict.store.predictions import StoredForecast

WRITE_THREADS = 4


@dataclass(frozen=True)
class ManifestEntry:
    """One file's entry in the manifest's ``artifacts``."""

    file: str
    kind: str  # history | prediction | status
    symbol: str | None
    timeframe: str | None
    generated_at: str | None
    freshness: str | None
    degraded: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fingerprint:
    """What a series file was last written from (``fp``), when, and the file's stat after."""

    fp: list[Any]
    generated_at: str
    stat: list[int] | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Fingerprint | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("fp"), list):
            return None
        stat = raw.get("stat")
        return cls(
            raw["fp"], str(raw.get("generated_at")), stat if isinstance(stat, list) else None
        )


@dataclass
class ExportResult:
    evaluation: Evaluation
    directory: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # left as they were: their read failed
    unchanged: list[str] = field(default_factory=list)  # nothing new since the last export
    failed: list[str] = field(default_factory=list)  # series that could not be read
    histories: dict[str, list[dict[str, Any]]] | None = None  # run records read for status.json
    swept: list[str] = field(default_factory=list)  # temp files a killed export left behind

    @property
    def exit_code(self) -> int:
        return code_for(len(self.failed), len(self.evaluation.series))

    @property
    def outcome(self) -> str:
        return outcome_word(self.exit_code)

    def reason(self) -> str | None:
        """One line: why the export is incomplete (None when every series was read)."""
        ev = self.evaluation
        if ev.store_error is not None:
            return ev.store_error
        if not self.failed:
            return None
        labels = ", ".join(self.failed[:5]) + (
            f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        )
        first = next(h for h in ev.series if h.series.label in self.failed)
        why = first.data.reason if first.data.freshness == UNKNOWN else None
        if why is None and first.served is not None:
            why = first.served.reason
        return (
            f"{len(self.failed)} of {len(ev.series)} series could not be read ({labels}); "
            f"{first.series.label}: {why}"
        )

    def summary(self) -> RunSummary:
        return RunSummary(
            outcome=self.outcome,
            series_ok=len(self.evaluation.series) - len(self.failed),
            series_failed=len(self.failed),
            message=self.reason(),
            extra={"files": len(self.written) + 2, "unchanged": len(self.unchanged)},
        )

    def as_dict(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "job": "export",
            "outcome": self.outcome,
            "exit_code": int(self.exit_code),
            "generated_at": iso(ev.now_ms),
            "directory": str(self.directory),
            "written": self.written,
            "kept": self.kept,
            "failed": self.failed,
            "swept": self.swept,
            "reason": self.reason(),
            "health": HEALTH_WORDS[HealthCode(ev.exit_code)],
            "counts": ev.counts(),
        }


def _thresholds(settings: Settings) -> dict[str, dict[str, int | None]]:
    out: dict[str, dict[str, int | None]] = {}
    for tf in settings.timeframes:
        p = settings.policy(tf)
        out[tf.code] = {
            "grace": p.grace_ms // 1000,
            "data_hard_limit": p.data_hard_ms // 1000,
            "prediction_hard_limit": (p.prediction_hard_ms or 0) // 1000 or None,
        }
    return out


def _manifest(
    settings: Settings, ev: Evaluation, entries: list[ManifestEntry], result: ExportResult
) -> dict[str, Any]:
    now = iso(ev.now_ms)
    series = []
    for h in ev.series:
        served = h.served
        series.append(
            {
                "symbol": h.series.symbol,
                "timeframe": h.series.timeframe.code,
                "prediction": prediction_name(h.series) if served is not None else None,
                "history": history_name(h.series),
                "freshness": (served or h.data).freshness,
                "data_freshness": h.data.freshness,
                "reason": (served if served is not None and served.code else h.data).code,
                "degraded": h.degraded,
            }
        )
    status = ManifestEntry(
        STATUS, "status", None, None, now, None, any(h.degraded for h in ev.series)
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now,
        "artifacts": [e.as_dict() for e in [*entries, status]],
        "series": series,
        "ops": {
            "health": HEALTH_WORDS[HealthCode(ev.exit_code)],
            "exit_code": int(ev.exit_code),
            "counts": ev.counts(),
            "influxdb_reachable": ev.store_error is None,
            "exchange": settings.exchange,
            "files_written": len(result.written) + 2,
            "files_unchanged": len(result.unchanged),
            "files_kept": result.kept,
            "temp_files_swept": len(result.swept),
            "series_failed": result.failed,
            "thresholds_seconds": _thresholds(settings),
        },
    }


def collect_for_export(
    settings: Settings,
    series: Sequence[Series],
    *,
    http: InfluxHTTP | None = None,
    threads: int = READ_THREADS,
    forecasts: Mapping[Series, StoredForecast] | None = None,
    candles: Mapping[Series, Sequence[CandleRow]] | None = None,
    now_ms: int | None = None,
) -> Collected:
    """What export reads for ``series``: their candle history window, newest forecast and state
    (``coinpredict cycle`` reads a series as soon as its forecast is stored, in the thread that
    forecast it: ``threads=1``, and passes that forecast in ``forecasts`` and the newest
    candles it was made from in ``candles``). ``now_ms``: the export's instant (the history is
    read from where it should start first)."""
    return collect(
        settings,
        series,
        http=http,
        history=settings.history_candles,
        check_exports=False,
        threads=threads,
        forecasts=forecasts,
        candles=candles,
        now_ms=now_ms,
    )


def _gather(
    settings: Settings,
    chosen: Sequence[Series],
    ready: Mapping[Series, SeriesFacts],
    http: InfluxHTTP | None,
    now_ms: int,
) -> Collected:
    """The facts of ``chosen`` in order: those read already (``ready``), the rest read now."""
    got = collect_for_export(
        settings, [s for s in chosen if s not in ready], http=http, now_ms=now_ms
    )
    read_now = {f.series: f for f in got.facts}
    facts = [ready.get(s) or read_now[s] for s in chosen]
    return Collected(facts, got.store_error, got.problems)


class _Plan:
    """What one export writes: every series file's content (in order), its manifest entry and
    the fingerprint it is written from. A file whose inputs did not change since the last export
    (and that nobody touched since) is left as it is (``result.unchanged``)."""

    def __init__(
        self, settings: Settings, result: ExportResult, previous: dict[str, Fingerprint]
    ) -> None:
        self.settings = settings
        self.result = result
        self.now = result.evaluation.now_ms
        self.previous = previous
        self.fingerprints: dict[str, Fingerprint] = {}
        self.entries: list[ManifestEntry] = []
        self.jobs: list[tuple[str, Callable[[], bytes]]] = []  # (file name, its content)

    def _generated_at(self, name: str, fp: list[Any], content: Callable[[], bytes]) -> str:
        """The previous generated_at when ``name`` needs no rewrite, else now (queued)."""
        old = self.previous.get(name)
        if old is not None and old.fp == fp and old.stat == _stat(self.result.directory / name):
            self.fingerprints[name] = old
            self.result.unchanged.append(name)
            return old.generated_at
        self.fingerprints[name] = Fingerprint(fp, iso(self.now))
        self.jobs.append((name, content))
        self.result.written.append(name)
        return iso(self.now)

    def add(self, facts: SeriesFacts, h: SeriesHealth) -> None:
        self._history(facts, h)
        self._prediction(h)

    def _history(self, facts: SeriesFacts, h: SeriesHealth) -> None:
        """A series whose candles could not be read keeps its previous history file."""
        name, s = history_name(h.series), h.series
        at: str | None = None
        if h.data.freshness == UNKNOWN:
            self.result.kept.append(name)
            self.result.failed.append(s.label)
        else:
            fp: list[Any] = [h.data.freshness, h.data.at_ms, h.data.reason]
            at = self._generated_at(
                name, fp, partial(history_bytes, h, facts.history or (), self.now)
            )
        self.entries.append(
            ManifestEntry(name, "history", s.symbol, s.timeframe.code, at, h.data.freshness, False)
        )

    def _prediction(self, h: SeriesHealth) -> None:
        """Always written when its forecast could not be read: unknown is blocked."""
        served = h.served
        if served is None:
            return
        s, name = h.series, prediction_name(h.series)
        if served.freshness == UNKNOWN and s.label not in self.result.failed:
            self.result.failed.append(s.label)
        fc = h.forecast
        fp: list[Any] = [
            served.freshness,
            served.reason,
            h.degraded,
            h.degraded_reason,
            None if fc is None else [fc.origin_ms, fc.issued_at_ms, fc.model_version],
        ]
        if served.freshness == UNKNOWN:
            fp.append(self.now)  # never "unchanged": an unknown state is re-published each run
        doc = partial(prediction_doc, h, self.now, interval_level=self.settings.interval_level)
        at = self._generated_at(name, fp, lambda: dumps(doc()))
        self.entries.append(
            ManifestEntry(
                name, "prediction", s.symbol, s.timeframe.code, at, served.freshness, h.degraded
            )
        )


def _export_dir(settings: Settings) -> Path:
    directory = settings.export_dir
    if directory.exists() and not directory.is_dir():
        raise ArtifactError(f"export directory {directory} is not a directory")
    ensure_dir(directory, "export directory")
    return directory


def _write_series_files(directory: Path, jobs: list[tuple[str, Callable[[], bytes]]]) -> None:
    """Write in parallel (fsync dominates: a few writers let the file system batch them); each
    file is fsynced before its rename, the directory once after the last rename (not once per
    file: ~1.5 ms each on ext4); the first failure in file order is raised (ArtifactError: one
    line, exit 1)."""

    def write(name: str, content: Callable[[], bytes]) -> None:
        atomic.write_bytes(directory / name, content(), public=True, sync_dir=False)
        crash_point("export.file_replaced", name)

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        futures = [pool.submit(write, name, content) for name, content in jobs]
        errors = [f.exception() for f in futures]
    if jobs:
        atomic.sync_directory(directory)  # the files renamed so far, whatever failed
    for error in errors:
        if error is not None:
            raise error


def export_once(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    http: InfluxHTTP | None = None,
    narrowed: bool = False,
    force: bool = False,
    ready: Mapping[Series, SeriesFacts] | None = None,
) -> ExportResult:
    """One export without lock or run record (``jobs.runner.run_export_job`` adds them).

    ``ready``: facts of some series read earlier in this process (``coinpredict cycle``, after
    their ingest and predict were done); only the other series are read now.

    Always completes when the export directory is writable: a series that cannot be read (or
    every series, InfluxDB being unreachable) is published as ``unknown`` (blocked), and
    ``manifest.json`` and ``status.json`` are written; ``result.failed`` names the series.

    New-candle trigger: a series file whose inputs did not change since the last export (same
    newest candle, same forecast, same freshness, degraded flag and reasons) is not rewritten;
    ``force`` rewrites every file. ``manifest.json`` and ``status.json`` are always rewritten.

    ``narrowed`` (``export -s/-t``): only some series are exported; the manifest keeps the
    previous entries of the other series and ``status.json`` (a whole-system document) is left
    to the next full export.
    """
    started = time.time()  # file times are wall-clock times, whatever ``clock`` says
    now = clock.now_ms()
    chosen = list(series) if series is not None else configured_series(settings, clock)
    got = _gather(settings, chosen, ready or {}, http, now)
    ev = evaluation_from(settings, got, now)
    directory = _export_dir(settings)
    result = ExportResult(ev, directory, swept=atomic.sweep_temp_files(directory, started))
    previous = {} if force else load_fingerprints(settings.state_dir)
    plan = _Plan(settings, result, previous)
    for facts, h in zip(got.facts, ev.series, strict=True):
        plan.add(facts, h)
    _write_series_files(directory, plan.jobs)
    for name in result.written:
        plan.fingerprints[name].stat = _stat(directory / name)
    save_fingerprints(settings.state_dir, {**previous, **plan.fingerprints})
    manifest = _manifest(settings, ev, plan.entries, result)
    if narrowed:
        _merge_previous(directory / MANIFEST, manifest, ev)
    else:
        health = HEALTH_WORDS[HealthCode(ev.exit_code)]
        result.histories = job_histories(settings.state_dir)  # the job runner reuses them
        status = public_status(ev, health, jobs_summary(result.histories))
        atomic.write_bytes(directory / STATUS, dumps(status), public=True)
    atomic.write_bytes(directory / MANIFEST, dumps(manifest), public=True)
    return result


def _stat(path: Path) -> list[int] | None:
    """Size, mtime and inode: any rewrite or hand edit of the file changes them."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _fingerprints_path(state_dir: Path) -> Path:
    return state_dir / "export-fingerprints.json"


def load_fingerprints(state_dir: Path) -> dict[str, Fingerprint]:
    """What each file was last written from; unreadable = none (everything is rewritten)."""
    try:
        data = atomic.read_json(_fingerprints_path(state_dir))
    except (FileNotFoundError, ArtifactError):
        return {}
    if not isinstance(data, dict):
        return {}
    loaded = {name: Fingerprint.from_json(raw) for name, raw in data.items()}
    return {name: fp for name, fp in loaded.items() if fp is not None}


def save_fingerprints(state_dir: Path, fingerprints: dict[str, Fingerprint]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {name: asdict(fp) for name, fp in fingerprints.items()}
    atomic.write_json(_fingerprints_path(state_dir), data, indent=None)


def _merge_previous(path: Path, manifest: dict[str, Any], ev: Evaluation) -> None:
    """Keep the previous manifest's entries of the series this narrowed export did not touch."""
    try:
        previous = atomic.read_json(path)
    except (FileNotFoundError, ArtifactError):
        return
    if not isinstance(previous, dict):
        return
    mine = {(h.series.symbol, h.series.timeframe.code) for h in ev.series}

    def other(entry: Any) -> bool:
        return (
            isinstance(entry, dict)
            and entry.get("symbol") is not None
            and (entry.get("symbol"), entry.get("timeframe")) not in mine
        )

    for key in ("artifacts", "series"):
        kept = [e for e in previous.get(key) or [] if other(e)]
        manifest[key] = kept + manifest[key]
