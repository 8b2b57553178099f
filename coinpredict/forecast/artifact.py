"""Model artifacts: ``model.joblib`` beside a JSON sidecar ``model.json``.

The sidecar is written last, so a directory without one is an unfinished save. Loading checks the
sidecar (format version, model name, library compatibility, SHA-256 of the artifact) *before*
unpickling, and refuses anything else with an :class:`ArtifactError` naming the file and why.
Only load artifacts this tool wrote: joblib files are pickles.
"""

from __future__ import annotations

import functools
import hashlib
import io
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coinpredict.base.errors import ArtifactError
from coinpredict.base.timeframes import iso
from coinpredict.local.atomic import read_json, write_bytes, write_json

if TYPE_CHECKING:
    from coinpredict.forecast.models import BaseForecaster

FORMAT = "coinpredict-model"
FORMAT_VERSION = 1
ARTIFACT_FILE = "model.joblib"
SIDECAR_FILE = "model.json"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _library_versions() -> dict[str, str | None]:
    import numpy

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "joblib": _version("joblib"),
        "polars": _version("polars"),
        "coinpredict": _version("coinpredict"),
    }


def library_versions() -> dict[str, str | None]:
    """The versions a model artifact depends on (looked up once per process)."""
    return dict(_library_versions())


def _major(v: str | None) -> str | None:
    return v.split(".")[0] if v else None


def save_model(
    model: BaseForecaster,
    directory: Path,
    *,
    version: str | None = None,
    trained_at_ms: int | None = None,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` into ``directory`` (created); returns the sidecar path."""
    import joblib

    if not model.fitted:
        raise ValueError("cannot save an unfitted model")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    if version is not None:
        model.version = version
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    data = buf.getvalue()
    write_bytes(directory / ARTIFACT_FILE, data)
    span = model.span or (0, 0)
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "version": model.version,
        "trained_at": iso(trained_at_ms if trained_at_ms is not None else time.time_ns() // 10**6),
        "timeframe": model.tf.code,
        "horizon": model.horizon,
        "level": model.level,
        "training_span": {"first": iso(span[0]), "last": iso(span[1]), "candles": model.n_fit},
        "features": model.features(),
        "params": model.describe(),
        "metrics": metrics or {},
        "libraries": library_versions(),
        "artifact": {
            "file": ARTIFACT_FILE,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        **extra,
    }
    path = directory / SIDECAR_FILE
    write_json(path, sidecar)
    return path


def read_sidecar(directory: Path) -> dict[str, Any]:
    """The checked sidecar of a saved model (without unpickling anything)."""
    from coinpredict.forecast.models import MODELS

    path = Path(directory) / SIDECAR_FILE
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: model metadata is missing (unfinished save?)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a coinpredict model sidecar")
    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: incompatible model format version {fv!r} (this coinpredict reads "
            f"{FORMAT_VERSION}); retrain the model"
        )
    if meta.get("name") not in MODELS:
        raise ArtifactError(f"{path}: unknown model name {meta.get('name')!r}")
    libs = meta.get("libraries") or {}
    mine = library_versions()
    for lib in ("numpy",):
        if _major(libs.get(lib)) != _major(mine[lib]):
            raise ArtifactError(
                f"{path}: incompatible model: trained with {lib} {libs.get(lib)}, "
                f"running {mine[lib]}; retrain the model"
            )
    art = meta.get("artifact")
    if not isinstance(art, dict) or not isinstance(art.get("sha256"), str):
        raise ArtifactError(f"{path}: sidecar lacks the artifact checksum")
    return meta


def load_model(directory: Path) -> BaseForecaster:
    """Load a model saved by :func:`save_model`, refusing corrupt or incompatible ones."""
    import joblib

    from coinpredict.forecast.models import MODELS

    directory = Path(directory)
    meta = read_sidecar(directory)
    path = directory / meta["artifact"].get("file", ARTIFACT_FILE)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: model artifact is missing") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read model artifact: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != meta["artifact"]["sha256"]:
        raise ArtifactError(f"{path}: corrupt model artifact (checksum mismatch)")
    try:
        model = joblib.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad artifact
        raise ArtifactError(f"{path}: corrupt model artifact ({type(exc).__name__})") from exc
    cls = MODELS[meta["name"]]
    if type(model) is not cls or not getattr(model, "fitted", False):
        raise ArtifactError(f"{path}: artifact does not hold a fitted {meta['name']} model")
    if getattr(model, "format_version", None) != FORMAT_VERSION:
        raise ArtifactError(f"{path}: incompatible model object format")
    model.version = meta.get("version")
    return model
