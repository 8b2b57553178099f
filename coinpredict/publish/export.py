"""``coinpredict export``: the JSON artifacts of SPEC section 5, every file replaced atomically.

Per series: ``history_{SYMBOL}_{TF}.json`` (every timeframe) and ``prediction_{SYMBOL}_{TF}.json``
(not 1m); then ``status.json`` (the same content as ``status --json``) and last ``manifest.json``
(so the manifest only names files that exist). The freshness published comes from the one
evaluator (coinpredict.health), evaluated at export time: a late or failed ingest never stops
export from publishing that the series went stale. A stale series is served with a warning; a
hard_stale, corrupt or unknown one carries ``predictions: []`` and says why. A failed predict run
leaves the last good forecast (the latest in InfluxDB) served with ``degraded: true``.

Exit codes: 0 done (whatever the freshness), 4 some series could not be read (their other files
are still written), 1 InfluxDB unreachable or the export directory unwritable (one line; files
already in place stay intact: every write is atomic, nothing is deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings
from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import ArtifactError, ExitCode, HealthCode, StoreUnavailableError
from coinpredict.base.series import Series
from coinpredict.base.timeframes import iso
from coinpredict.health.collect import Collected, collect, configured_series, evaluation_from
from coinpredict.health.freshness import UNKNOWN, Evaluation, SeriesFacts
from coinpredict.health.status import HEALTH_WORDS, job_histories, jobs_summary, status_json
from coinpredict.local import atomic
from coinpredict.local.runs import recorded_run
from coinpredict.local.state import ensure_dir
from coinpredict.publish.artifacts import (
    MANIFEST,
    SCHEMA_VERSION,
    STATUS,
    dumps,
    history_bytes,
    history_name,
    prediction_doc,
    prediction_name,
)
from coinpredict.store.http import InfluxHTTP

WRITE_THREADS = 4


class StoreDownDuringExport(StoreUnavailableError):
    def __init__(self, message: str, evaluation: Evaluation) -> None:
        super().__init__(message)
        self.evaluation = evaluation


@dataclass
class ExportResult:
    evaluation: Evaluation
    directory: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # left as they were: their read failed
    unchanged: list[str] = field(default_factory=list)  # nothing new since the last export
    failed: list[str] = field(default_factory=list)  # series that could not be read

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return ExitCode.OK
        if len(self.failed) >= len(self.evaluation.series):
            return ExitCode.FAILURE
        return ExitCode.PARTIAL

    @property
    def outcome(self) -> str:
        code = self.exit_code
        return "ok" if code == ExitCode.OK else "failed" if code == ExitCode.FAILURE else "partial"

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
            "health": HEALTH_WORDS[HealthCode(ev.exit_code)],
            "counts": ev.counts(),
        }


def _manifest(
    settings: Settings, ev: Evaluation, entries: list[dict[str, Any]], result: ExportResult
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
                "degraded": h.degraded,
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": now,
        "artifacts": entries
        + [
            {
                "file": STATUS,
                "kind": "status",
                "symbol": None,
                "timeframe": None,
                "generated_at": now,
                "freshness": None,
                "degraded": any(h.degraded for h in ev.series),
            }
        ],
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
            "series_failed": result.failed,
            "thresholds_seconds": {
                tf.code: {
                    "grace": settings.policy(tf).grace_ms // 1000,
                    "data_hard_limit": settings.policy(tf).data_hard_ms // 1000,
                    "prediction_hard_limit": (settings.policy(tf).prediction_hard_ms or 0) // 1000
                    or None,
                }
                for tf in settings.timeframes
            },
        },
    }


def collect_for_export(
    settings: Settings, series: Sequence[Series], *, http: InfluxHTTP | None = None
) -> Collected:
    """What export reads for ``series``: their candle history window, newest forecast and state
    (``coinpredict cycle`` reads a series as soon as its forecast is stored)."""
    return collect(
        settings, series, http=http, history=settings.history_candles, check_exports=False
    )


def _gather(
    settings: Settings,
    chosen: Sequence[Series],
    ready: Mapping[Series, SeriesFacts],
    http: InfluxHTTP | None,
) -> Collected:
    """The facts of ``chosen`` in order: those read already (``ready``), the rest read now."""
    got = collect_for_export(settings, [s for s in chosen if s not in ready], http=http)
    read_now = {f.series: f for f in got.facts}
    facts = [ready.get(s) or read_now[s] for s in chosen]
    return Collected(facts, got.store_error, got.problems)


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
    """One export without lock or run record (``run_export`` adds them).

    ``ready``: facts of some series read earlier in this process (``coinpredict cycle``, after
    their ingest and predict were done); only the other series are read now.

    New-candle trigger: a series file whose inputs did not change since the last export (same
    newest candle, same forecast, same freshness, degraded flag and reasons) is not rewritten;
    ``force`` rewrites every file. ``manifest.json`` and ``status.json`` are always rewritten.

    ``narrowed`` (``export -s/-t``): only some series are exported; the manifest keeps the
    previous entries of the other series and ``status.json`` (a whole-system document) is left
    to the next full export.
    """
    now = clock.now_ms()
    chosen = list(series) if series is not None else configured_series(settings, clock)
    got = _gather(settings, chosen, ready or {}, http)
    ev = evaluation_from(settings, got, now)
    if ev.store_error is not None:
        raise StoreDownDuringExport(ev.store_error, ev)
    directory = settings.export_dir
    if directory.exists() and not directory.is_dir():
        raise ArtifactError(f"export directory {directory} is not a directory")
    ensure_dir(directory, "export directory")
    result = ExportResult(ev, directory)
    entries: list[dict[str, Any]] = []
    jobs: list[tuple[str, Callable[[], bytes]]] = []  # (file name, its content), in order
    previous = {} if force else load_fingerprints(settings.state_dir)
    fingerprints: dict[str, dict[str, Any]] = {}

    def unchanged(name: str, fp: list[Any]) -> str | None:
        """The previous generated_at when ``name`` needs no rewrite, else None."""
        fingerprints[name] = {"fp": fp, "generated_at": iso(now)}
        old = previous.get(name)
        if old is None or old.get("fp") != fp or old.get("stat") != _stat(directory / name):
            return None  # new inputs, or the file is gone or was changed since we wrote it
        fingerprints[name] = old
        result.unchanged.append(name)
        return str(old.get("generated_at"))

    for facts, h in zip(got.facts, ev.series, strict=True):
        s = h.series
        hist = history_name(s)
        hist_at: str | None = None
        if h.data.freshness == UNKNOWN:
            result.kept.append(hist)
            result.failed.append(s.label)
        else:
            fp: list[Any] = [h.data.freshness, h.data.at_ms, h.data.reason]
            hist_at = unchanged(hist, fp)
            if hist_at is None:
                jobs.append((hist, partial(history_bytes, h, facts.history or (), now)))
                result.written.append(hist)
                hist_at = iso(now)
        entries.append(_entry(hist, "history", s, hist_at, h.data.freshness, degraded=False))
        served = h.served
        if served is None:
            continue
        if served.freshness == UNKNOWN and s.label not in result.failed:
            result.failed.append(s.label)
        pred = prediction_name(s)
        fc = h.forecast
        fp = [
            served.freshness,
            served.reason,
            h.degraded,
            h.degraded_reason,
            None if fc is None else [fc.origin_ms, fc.issued_at_ms, fc.model_version],
        ]
        pred_at = None if served.freshness == UNKNOWN else unchanged(pred, fp)
        if pred_at is None:
            doc = prediction_doc(h, now, interval_level=settings.interval_level)
            jobs.append((pred, partial(dumps, doc)))
            result.written.append(pred)
            pred_at = iso(now)
        entries.append(_entry(pred, "prediction", s, pred_at, served.freshness, h.degraded))

    def write(name: str, content: Callable[[], bytes]) -> None:
        atomic.write_bytes(directory / name, content())
        crash_point("export.file_replaced", name)

    # fsync dominates: a few writers in parallel let the file system batch them
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        futures = [pool.submit(write, name, content) for name, content in jobs]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error  # the first failure in file order (ArtifactError: one line, exit 1)
    for name in result.written:
        fingerprints[name]["stat"] = _stat(directory / name)
    save_fingerprints(settings.state_dir, {**previous, **fingerprints})
    manifest = _manifest(settings, ev, entries, result)
    if narrowed:
        _merge_previous(directory / MANIFEST, manifest, ev)
    else:
        status = status_json(ev, jobs_summary(job_histories(settings.state_dir)))
        atomic.write_bytes(directory / STATUS, dumps(status))
    atomic.write_bytes(directory / MANIFEST, dumps(manifest))
    return result


def _entry(
    name: str, kind: str, s: Series, generated_at: str | None, freshness: str, degraded: bool
) -> dict[str, Any]:
    """One series file's entry in the manifest's ``artifacts``."""
    return {
        "file": name,
        "kind": kind,
        "symbol": s.symbol,
        "timeframe": s.timeframe.code,
        "generated_at": generated_at,
        "freshness": freshness,
        "degraded": degraded,
    }


def _stat(path: Path) -> list[int] | None:
    """Size, mtime and inode: any rewrite or hand edit of the file changes them."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _fingerprints_path(state_dir: Path) -> Path:
    return state_dir / "export-fingerprints.json"


def load_fingerprints(state_dir: Path) -> dict[str, Any]:
    """What each file was last written from; unreadable = none (everything is rewritten)."""
    try:
        data = atomic.read_json(_fingerprints_path(state_dir))
    except (FileNotFoundError, ArtifactError):
        return {}
    return data if isinstance(data, dict) else {}


def save_fingerprints(state_dir: Path, fingerprints: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(_fingerprints_path(state_dir), fingerprints, indent=None)


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


def run_export(
    settings: Settings,
    clock: Clock,
    series: Sequence[Series] | None = None,
    *,
    narrowed: bool = False,
    force: bool = False,
    ready: Mapping[Series, SeriesFacts] | None = None,
) -> ExportResult:
    """Export under the ``export`` lock with a run record, then refresh the metrics textfile."""
    evaluation: Evaluation | None = None
    try:
        with recorded_run(
            settings.state_dir, "export", clock, locks=["export"], wait_ms=settings.lock_wait_ms
        ) as record:
            try:
                result = export_once(
                    settings, clock, series, narrowed=narrowed, force=force, ready=ready
                )
            except StoreDownDuringExport as exc:
                evaluation = exc.evaluation
                raise
            evaluation = result.evaluation
            record.outcome = result.outcome
            record.series_failed = len(result.failed)
            record.series_ok = len(result.evaluation.series) - len(result.failed)
            record.extra = {"files": len(result.written) + 2, "unchanged": len(result.unchanged)}
            if result.failed:
                record.message = "not read: " + ", ".join(result.failed)
    finally:
        from coinpredict.health.metrics import write_textfile

        write_textfile(settings, clock, evaluation, evaluate=False)
    return result
