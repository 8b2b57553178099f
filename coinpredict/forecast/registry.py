"""Model registry per series: versions, champion / shadow, promotion gate, rollback, prune.

Layout under the caller's ``models_dir``::

    {SYMBOL_STEM}_{TF}/            e.g. BTC_USDT_1h/
        registry.json              champion, previous champions, shadow, versions, history
        v1/model.joblib, v1/model.json, v1/backtest.json
        v2/...

``registry.json`` is the only source of truth and is replaced atomically, always *after* a version
directory is completely written. A version directory that ``registry.json`` does not list (a crash
mid-train) is ignored and later removed by :func:`prune`. ``builtin`` is the built-in naive
last-close model: the champion of every series until something better is promoted.
Mutating calls are meant to run under the caller's per-series job lock.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from coinpredict.base.clock import Clock, SystemClock
from coinpredict.base.crashpoints import crash_point
from coinpredict.base.errors import ArtifactError, CoinpredictError
from coinpredict.base.symbols import file_stem
from coinpredict.base.timeframes import TIMEFRAMES, Timeframe, iso
from coinpredict.forecast.types import DEFAULT_LEVEL, WIDE_LEVEL, Forecast, PromotionRefused
from coinpredict.local.atomic import read_json, write_json

BUILTIN = "builtin"
REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = 1
_VERSION_RE = re.compile(r"v([1-9][0-9]{0,8})")
#: The margin over the champion that ``train --promote`` and ``models promote`` demand.
CLI_MARGIN = 0.005
#: The gate's backtests refit the models at every k-th origin and serve the origins in between
#: from that fit (as ``predict`` serves between two ``train`` runs); bench/forecast.py
#: ``--train-timing`` shows the figures hardly move against refitting at every origin.
GATE_REFIT_EVERY = 10


@dataclass(frozen=True)
class Gate:
    """Promotion quality gate (all conditions must hold)."""

    max_relative_mae: float = 1.00  # shadow MAE / naive MAE on the same origins
    margin: float = 0.0  # shadow[compare_on] <= champion[compare_on] * (1 - margin)
    # What "better than the champion" means: ``relative_pinball`` (quantile loss of the point
    # and both bands, a proper score of the whole forecast) or ``relative_mae`` (point only).
    compare_on: str = "relative_pinball"
    coverage_tolerance: float = 0.05  # |coverage - level| of the main band
    coverage95_tolerance: float = 0.03  # |coverage_95 - 0.95|
    min_samples: int = 200  # scored (origin, step) pairs
    # Width that earns its keep, against naive's empirical band on the same origins: the
    # shadow's interval score at most this times naive's, and its mean main-band width at most
    # this times naive's unless its coverage is closer to the nominal level than naive's.
    max_relative_interval_score: float = 1.00
    max_relative_width: float = 1.00

    @classmethod
    def for_cli(cls, margin: float = CLI_MARGIN) -> Gate:
        """The gate of ``train --promote`` and ``models promote``: a margin over the champion."""
        return cls(margin=margin)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelRef:
    """A registered model (or the built-in naive default) of one series."""

    version: str
    name: str
    path: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def is_builtin(self) -> bool:
        return self.version == BUILTIN

    def load(self, tf: Timeframe | str, horizon: int, level: float = DEFAULT_LEVEL) -> Any:
        """The model object; the built-in default is an unfitted naive model."""
        from coinpredict.forecast.artifact import load_model
        from coinpredict.forecast.models import NaiveForecaster

        if self.is_builtin or self.path is None:
            m = NaiveForecaster(tf, horizon, level=level)
            m.version = BUILTIN
            return m
        return load_model(self.path)


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, Any]


def _tf(tf: Timeframe | str) -> Timeframe:
    return TIMEFRAMES[tf] if isinstance(tf, str) else tf


def series_dir(models_dir: Path, symbol: str, tf: Timeframe | str) -> Path:
    return Path(models_dir) / f"{file_stem(symbol)}_{_tf(tf).code}"


def _now(clock: Clock | None) -> int:
    return (clock or SystemClock()).now_ms()


def _vnum(version: str) -> int:
    m = _VERSION_RE.fullmatch(version)
    return int(m.group(1)) if m else 0


@dataclass
class VersionInfo:
    """What ``registry.json`` knows about one registered version."""

    name: str
    created_at: str
    horizon: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegistryState:
    """The content of ``registry.json``: roles, versions and the append-only history."""

    symbol: str
    timeframe: str
    champion: str = BUILTIN
    previous: list[str] = field(default_factory=list)  # last = what rollback restores
    shadow: str | None = None
    versions: dict[str, VersionInfo] = field(default_factory=dict)
    next_version: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)

    def log(self, action: str, version: str | None, at: int, by: str, **extra: Any) -> None:
        self.history.append(
            {"action": action, "version": version, "at": iso(at), "by": by, **extra}
        )

    def role(self, version: str) -> str:
        if self.champion == version:
            return "champion"
        if self.shadow == version:
            return "shadow"
        return "previous" if version in self.previous else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": REGISTRY_FORMAT,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "champion": self.champion,
            "previous": self.previous,
            "shadow": self.shadow,
            "versions": {v: info.to_json() for v, info in self.versions.items()},
            "next_version": self.next_version,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, d: Any, path: Path) -> RegistryState:
        """The state in ``d``; ArtifactError naming ``path`` for anything else."""
        if not isinstance(d, dict) or d.get("format_version") != REGISTRY_FORMAT:
            raise ArtifactError(f"{path}: not a registry this coinpredict can read")
        for key in ("champion", "previous", "versions", "history"):
            if key not in d:
                raise ArtifactError(f"{path}: registry lacks {key!r}")
        try:
            versions = {
                str(v): VersionInfo(
                    str(i.get("name", "?")),
                    str(i.get("created_at", "")),
                    int(i.get("horizon", 0)),
                    dict(i.get("metrics") or {}),
                )
                for v, i in d["versions"].items()
            }
            return cls(
                symbol=str(d.get("symbol", "")),
                timeframe=str(d.get("timeframe", "")),
                champion=str(d["champion"]),
                previous=[str(v) for v in d["previous"]],
                shadow=None if d.get("shadow") is None else str(d["shadow"]),
                versions=versions,
                next_version=int(d.get("next_version", 1)),
                history=list(d["history"]),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: malformed registry ({exc})") from None


class Registry:
    """One series' registry. Read with :meth:`state`; every change goes through :meth:`_commit`."""

    def __init__(self, models_dir: Path, symbol: str, tf: Timeframe | str) -> None:
        self.symbol = symbol
        self.tf = _tf(tf)
        self.dir = series_dir(models_dir, symbol, self.tf)
        self.path = self.dir / REGISTRY_FILE

    # --- state -------------------------------------------------------------------------
    def state(self) -> RegistryState:
        try:
            raw = read_json(self.path)
        except FileNotFoundError:
            return RegistryState(self.symbol, self.tf.code)
        return RegistryState.from_json(raw, self.path)

    def _commit(self, st: RegistryState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        crash_point("registry.replace", self.dir.name)
        write_json(self.path, st.to_json())

    def ref(self, version: str | None, st: RegistryState | None = None) -> ModelRef | None:
        if version is None:
            return None
        if version == BUILTIN:
            return ModelRef(BUILTIN, "naive", None, {})
        st = st or self.state()
        info = st.versions.get(version)
        if info is None:
            raise ArtifactError(f"{self.path}: version {version} is not registered")
        return ModelRef(version, info.name, self.dir / version, info.metrics)

    def champion(self) -> ModelRef:
        st = self.state()
        ref = self.ref(st.champion, st)
        assert ref is not None
        return ref

    def shadow(self) -> ModelRef | None:
        st = self.state()
        return self.ref(st.shadow, st)

    def versions(self) -> list[dict[str, Any]]:
        st = self.state()
        rows: list[dict[str, Any]] = [
            {"version": BUILTIN, "name": "naive", "role": st.role(BUILTIN)}
        ]
        for v in sorted(st.versions, key=_vnum):
            rows.append({"version": v, "role": st.role(v), **st.versions[v].to_json()})
        return rows

    # --- changes ----------------------------------------------------------------------
    def _next_version(self, st: RegistryState) -> str:
        n = st.next_version
        if self.dir.exists():  # skip leftovers of a crashed save
            for p in self.dir.iterdir():
                n = max(n, _vnum(p.name) + 1)
        n = max([n] + [_vnum(v) + 1 for v in st.versions])
        return f"v{n}"

    def register_shadow(
        self,
        model: Any,
        *,
        metrics: dict[str, Any] | None = None,
        backtest: dict[str, Any] | None = None,
        by: str = "train",
        clock: Clock | None = None,
    ) -> str:
        """Save ``model`` as a new version and make it the shadow. Returns the version."""
        from coinpredict.forecast.artifact import save_model

        st = self.state()
        version = self._next_version(st)
        at = _now(clock)
        vdir = self.dir / version
        vdir.mkdir(parents=True, exist_ok=False)
        if backtest is not None:
            write_json(vdir / "backtest.json", backtest)
        save_model(
            model,
            vdir,
            version=version,
            trained_at_ms=at,
            metrics=metrics or {},
            symbol=self.symbol,
        )
        # Only now, with the version complete on disk, does the registry learn about it.
        st.versions[version] = VersionInfo(model.name, iso(at), model.horizon, metrics or {})
        st.next_version = _vnum(version) + 1
        replaced = st.shadow
        st.shadow = version
        st.log("register_shadow", version, at, by, replaced_shadow=replaced, metrics=metrics or {})
        self._commit(st)
        return version

    def promote(
        self,
        *,
        gate: Gate | None = None,
        frame: pl.DataFrame | None = None,
        horizon: int | None = None,
        level: float = DEFAULT_LEVEL,
        origins: int = 100,
        span: int | None = None,
        by: str = "cli",
        clock: Clock | None = None,
    ) -> dict[str, Any]:
        """Promote the shadow if it passes ``gate``; raise :class:`PromotionRefused` otherwise.

        With ``frame``, champion and shadow are backtested afresh on the same origins; without
        it, the metrics recorded when each was trained are used (the shadow's relative MAE
        against the champion's, which is 1.0 for the built-in naive).
        """
        gate = gate or Gate()
        st = self.state()
        sv = st.shadow
        if sv is None:
            raise PromotionRefused(
                f"promotion refused: {self.symbol} {self.tf} has no shadow model",
                condition="shadow",
            )
        shadow_ref = self.ref(sv, st)
        champ_ref = self.ref(st.champion, st)
        assert shadow_ref is not None and champ_ref is not None
        if frame is not None:
            report = compare_refs(
                champ_ref,
                shadow_ref,
                frame,
                self.tf,
                horizon,
                level=level,
                origins=origins,
                span=span,
            )
        else:
            sm = shadow_ref.metrics or {}
            cm = (
                {"relative_mae": 1.0, "relative_pinball": 1.0}
                if champ_ref.is_builtin
                else (champ_ref.metrics or {})
            )
            report = {"source": "recorded", "shadow": sm, "champion": cm, "level": level}
        report["gate"] = gate.to_json()
        try:
            check_gate(report, gate, shadow=sv, champion=st.champion)
        except PromotionRefused as exc:
            st.log(
                "promote_refused",
                sv,
                _now(clock),
                by,
                reason=str(exc),
                condition=exc.condition,
                metrics=_summary(report.get("shadow") or {}),
            )
            self._commit(st)
            exc.report = report
            raise
        st.previous.append(st.champion)
        st.champion = sv
        st.shadow = None
        st.log(
            "promote",
            sv,
            _now(clock),
            by,
            replaced=st.previous[-1],
            metrics=_summary(report.get("shadow", {})),
        )
        self._commit(st)
        return report

    def rollback(self, *, by: str = "cli", clock: Clock | None = None) -> str:
        """Restore the previous champion; the current one is kept as a version. Returns it."""
        st = self.state()
        if not st.previous:
            raise CoinpredictError(
                f"cannot roll back {self.symbol} {self.tf}: no previous champion "
                f"(champion is {st.champion})"
            )
        current = st.champion
        restored = st.previous.pop()
        st.champion = restored
        info = st.versions.get(restored)
        st.log(
            "rollback",
            restored,
            _now(clock),
            by,
            replaced=current,
            metrics=_summary(info.metrics if info else {}),
        )
        self._commit(st)
        return restored

    def prune(self, keep: int = 3, *, by: str = "cli", clock: Clock | None = None) -> list[str]:
        """Delete all but the ``keep`` newest versions, never the champion, its predecessor or
        the shadow; also unregistered leftovers of crashed saves. Returns what was removed."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        st = self.state()
        protected = {st.champion, st.shadow}
        if st.previous:
            protected.add(st.previous[-1])
        ordered = sorted(st.versions, key=_vnum, reverse=True)
        newest = set(ordered[:keep])
        drop = [v for v in ordered if v not in newest and v not in protected]
        if drop:
            for v in drop:
                del st.versions[v]
            st.previous = [v for v in st.previous if v not in drop]
            st.log("prune", None, _now(clock), by, removed=sorted(drop, key=_vnum), metrics={})
            self._commit(st)  # the registry forgets them first, then the files go
        removed = list(drop)
        if self.dir.exists():
            for p in self.dir.iterdir():
                if p.is_dir() and _VERSION_RE.fullmatch(p.name) and p.name not in st.versions:
                    shutil.rmtree(p, ignore_errors=True)
                    if p.name not in removed:
                        removed.append(p.name)
        return sorted(removed, key=_vnum)


# --- gate & comparison ---------------------------------------------------------------------
#: The metrics reports show side by side (also the columns of ``models report``).
METRIC_KEYS = (
    "samples",
    "relative_mae",
    "mase",
    "coverage",
    "coverage_95",
    "width_pct",
    "relative_pinball",
)
_SUMMARY_KEYS = (
    *METRIC_KEYS,
    "relative_width",
    "relative_interval_score",
    "naive_coverage",
    "directional_accuracy",
    "fit_predict_ms_mean",
)


def _summary(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in _SUMMARY_KEYS if k in m}


def check_gate(report: dict[str, Any], gate: Gate, *, shadow: str, champion: str) -> None:
    s = report.get("shadow") or {}
    c = report.get("champion") or {}
    level = float(report.get("level", DEFAULT_LEVEL))
    n = int(s.get("samples") or 0)

    def refuse(condition: str, why: str) -> NoReturn:
        raise PromotionRefused(f"promotion refused: shadow {shadow} {why}", condition=condition)

    if n < gate.min_samples:
        refuse("samples", f"was scored on {n} samples, the gate needs at least {gate.min_samples}")
    rel = s.get("relative_mae")
    if rel is None or rel > gate.max_relative_mae:
        refuse(
            "naive",
            f"is worse than naive last-close: relative MAE {rel} > {gate.max_relative_mae:.2f}",
        )
    key = gate.compare_on
    if key not in ("relative_pinball", "relative_mae"):
        raise ValueError(f"gate.compare_on must be relative_pinball or relative_mae, not {key!r}")
    what = "pinball loss" if key == "relative_pinball" else "MAE"
    s_val, c_val = s.get(key), c.get(key)
    if s_val is None or c_val is None:
        refuse("champion", f"cannot be compared with champion {champion} (no {key})")
    if s_val > c_val * (1.0 - gate.margin):
        refuse(
            "champion",
            f"does not beat champion {champion} by the margin {gate.margin:.2%}: relative "
            f"{what} {s_val:.4f} vs {c_val:.4f}",
        )
    cov = s.get("coverage")
    _check_width(s, report.get("naive") or {}, gate, level, refuse)
    if cov is None or abs(cov - level) > gate.coverage_tolerance:
        refuse(
            "coverage",
            f"interval coverage {cov} is not within {gate.coverage_tolerance:.2f} of the nominal "
            f"{level:.2f}",
        )
    cov95 = s.get("coverage_95")
    if cov95 is None or abs(cov95 - WIDE_LEVEL) > gate.coverage95_tolerance:
        refuse(
            "coverage_95",
            f"95% interval coverage {cov95} is not within {gate.coverage95_tolerance:.2f} of 0.95",
        )


def _check_width(
    s: Mapping[str, Any],
    naive: Mapping[str, Any],
    gate: Gate,
    level: float,
    refuse: Callable[[str, str], NoReturn],
) -> None:
    """The band must earn its width against naive's empirical band on the same origins: an
    interval score no worse, and no wider unless it covers closer to the nominal level."""
    ris, rw = s.get("relative_interval_score"), s.get("relative_width")
    if ris is None or rw is None:
        refuse("width", "cannot be compared with naive's band (no relative width); retrain it")
    if ris > gate.max_relative_interval_score:
        refuse(
            "width",
            f"has an interval score {ris:.4f}x naive's empirical band "
            f"(> {gate.max_relative_interval_score:.2f})",
        )
    if rw > gate.max_relative_width:
        cov = s.get("coverage")
        n_cov = naive.get("coverage", s.get("naive_coverage"))
        if cov is None or n_cov is None or abs(cov - level) >= abs(n_cov - level):
            refuse(
                "width",
                f"has a band {rw:.3f}x as wide as naive's empirical band without covering "
                f"closer to {level:.2f} (coverage {cov} vs naive's {n_cov})",
            )


def compare_refs(
    champ: ModelRef,
    shadow: ModelRef,
    frame: pl.DataFrame,
    tf: Timeframe | str,
    horizon: int | None,
    *,
    level: float = DEFAULT_LEVEL,
    origins: int = 100,
    span: int | None = None,
) -> dict[str, Any]:
    """Backtest champion and shadow on the same origins (naive included)."""
    from coinpredict.forecast.backtest import backtest

    tf = _tf(tf)
    s_model = shadow.load(tf, horizon or 1, level)
    H = horizon or s_model.horizon
    c_model = champ.load(tf, H, level)
    specs = [(f"shadow:{shadow.version}", s_model)]
    if not champ.is_builtin:
        specs.append((f"champion:{champ.version}", c_model))
    res = backtest(
        frame, tf, specs, H, origins=origins, span=span, level=level, refit_every=GATE_REFIT_EVERY
    )
    out = {
        "source": "backtest",
        "level": level,
        "horizon": H,
        "n_origins": res.n_origins,
        "shadow": res.models[specs[0][0]].overall,
        "champion": res.models["naive" if champ.is_builtin else specs[1][0]].overall,
        "naive": res.models["naive"].overall,
        "backtest": res.to_json(),
    }
    return out


# --- functional API (what the CLI calls) -----------------------------------------------------
def champion(models_dir: Path, symbol: str, tf: Timeframe | str) -> ModelRef:
    """The serving model of a series (the built-in naive when nothing was promoted)."""
    return Registry(models_dir, symbol, tf).champion()


def shadow(models_dir: Path, symbol: str, tf: Timeframe | str) -> ModelRef | None:
    return Registry(models_dir, symbol, tf).shadow()


def list_versions(models_dir: Path, symbol: str, tf: Timeframe | str) -> list[dict[str, Any]]:
    return Registry(models_dir, symbol, tf).versions()


def history(models_dir: Path, symbol: str, tf: Timeframe | str) -> list[dict[str, Any]]:
    return list(Registry(models_dir, symbol, tf).state().history)


def register_shadow(
    models_dir: Path, symbol: str, tf: Timeframe | str, model: Any, **kw: Any
) -> str:
    return Registry(models_dir, symbol, tf).register_shadow(model, **kw)


def promote(models_dir: Path, symbol: str, tf: Timeframe | str, **kw: Any) -> dict[str, Any]:
    return Registry(models_dir, symbol, tf).promote(**kw)


def rollback(models_dir: Path, symbol: str, tf: Timeframe | str, **kw: Any) -> str:
    return Registry(models_dir, symbol, tf).rollback(**kw)


def prune(
    models_dir: Path, symbol: str, tf: Timeframe | str, keep: int = 3, **kw: Any
) -> list[str]:
    return Registry(models_dir, symbol, tf).prune(keep, **kw)


def compare(
    models_dir: Path,
    symbol: str,
    tf: Timeframe | str,
    frame: pl.DataFrame,
    horizon: int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Champion vs shadow report on a fresh backtest (``models compare``)."""
    reg = Registry(models_dir, symbol, tf)
    sh = reg.shadow()
    if sh is None:
        raise CoinpredictError(f"{symbol} {reg.tf}: no shadow model to compare")
    return compare_refs(reg.champion(), sh, frame, reg.tf, horizon, **kw)


def train_series(
    models_dir: Path,
    symbol: str,
    tf: Timeframe | str,
    frame: pl.DataFrame,
    horizon: int,
    *,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    level: float = DEFAULT_LEVEL,
    origins: int = 100,
    span: int | None = None,
    by: str = "train",
    clock: Clock | None = None,
) -> TrainResult:
    """Fit the learned model on ``frame``, backtest it (rolling origin, naive on the same origins),
    save it as a new version and register it as the shadow. The champion is never changed."""
    from coinpredict.forecast.backtest import backtest
    from coinpredict.forecast.models import DEFAULT_MODEL, make_model

    tf = _tf(tf)
    name = model or DEFAULT_MODEL
    proto = make_model(name, tf, horizon, level=level, **dict(params or {}))
    fitted = make_model(name, tf, horizon, level=level, **dict(params or {})).fit(frame)
    bt_json: dict[str, Any] | None
    try:
        res = backtest(
            frame,
            tf,
            [proto],
            horizon,
            origins=origins,
            span=span,
            level=level,
            refit_every=GATE_REFIT_EVERY,
        )
        metrics = _summary(res.models[name].overall)
        metrics["naive_coverage"] = res.models["naive"].overall.get("coverage")
        metrics["per_horizon_relative_mae"] = [
            m.get("relative_mae") for m in res.models[name].per_horizon
        ]
        metrics["n_origins"] = res.n_origins
        bt_json = res.to_json()
    except CoinpredictError as exc:  # too short for a backtest beyond the fit: no metrics
        metrics = {"samples": 0, "backtest_error": str(exc)}
        bt_json = None
    reg = Registry(models_dir, symbol, tf)
    version = reg.register_shadow(fitted, metrics=metrics, backtest=bt_json, by=by, clock=clock)
    return TrainResult(version, reg.dir / version, metrics)


def load_for_series(
    models_dir: Path,
    symbol: str,
    tf: Timeframe | str,
    horizon: int,
    level: float = DEFAULT_LEVEL,
    role: str = "champion",
) -> tuple[ModelRef, Any]:
    """The series' champion (or shadow) and its loaded model. ``model.predict_rows()`` says how
    many of the newest candles it needs, so the caller reads no more than that."""
    tf = _tf(tf)
    reg = Registry(models_dir, symbol, tf)
    if role == "champion":
        ref = reg.champion()
    elif role == "shadow":
        sh = reg.shadow()
        if sh is None:
            raise CoinpredictError(f"{symbol} {tf}: no shadow model")
        ref = sh
    else:
        raise ValueError(f"role must be 'champion' or 'shadow', not {role!r}")
    model = ref.load(tf, horizon, level)
    if not ref.is_builtin and model.horizon < horizon:
        raise CoinpredictError(
            f"{symbol} {tf}: model {ref.version} was trained for horizon {model.horizon}, "
            f"{horizon} was asked; retrain it"
        )
    return ref, model


def forecast_with(
    ref: ModelRef, model: Any, frame: pl.DataFrame, horizon: int, level: float = DEFAULT_LEVEL
) -> Forecast:
    """Forecast with a model from :func:`load_for_series`; the built-in naive is fitted on
    ``frame`` first."""
    if ref.is_builtin:
        model.fit(frame)
    fc = model.predict(frame, horizon=horizon, level=level)
    if fc.model_version != ref.version:
        from dataclasses import replace

        fc = replace(fc, model_version=ref.version)
    return fc


def forecast_for_series(
    models_dir: Path,
    symbol: str,
    tf: Timeframe | str,
    frame: pl.DataFrame,
    horizon: int,
    level: float = DEFAULT_LEVEL,
    role: str = "champion",
) -> Forecast:
    """Forecast a series with its champion (or shadow) model. The built-in naive champion is
    fitted on ``frame`` on the fly. Raises ArtifactError for a broken model,
    InsufficientHistoryError for a too-short frame."""
    ref, model = load_for_series(models_dir, symbol, tf, horizon, level, role)
    return forecast_with(ref, model, frame, horizon, level)
