"""Rolling-origin backtest: every model refitted on the data up to each origin, scored on the
candles that followed, against naive last-close on exactly the same origins and horizons."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from coinpredict.base.errors import CoinpredictError
from coinpredict.base.timeframes import TIMEFRAMES, Timeframe, iso
from coinpredict.forecast.models import BaseForecaster, NaiveForecaster, make_model
from coinpredict.forecast.types import DEFAULT_LEVEL, Forecast, InsufficientHistoryError

#: A model name, ``(name, params)``, a model instance (its settings are refitted at each
#: origin), or ``(label, instance)`` to tell two models of the same name apart.
ModelSpec = str | tuple[str, Mapping[str, Any]] | BaseForecaster | tuple[str, BaseForecaster]


@dataclass
class ModelReport:
    name: str
    overall: dict[str, Any]
    per_horizon: list[dict[str, Any]]
    per_symbol: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "overall": self.overall,
            "per_horizon": self.per_horizon,
            "per_symbol": self.per_symbol,
        }


@dataclass
class BacktestResult:
    timeframe: str
    horizon: int
    level: float
    symbols: list[str]
    n_origins: int
    first_origin: int | None
    last_origin: int | None
    refit_every: int
    models: dict[str, ModelReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> ModelReport:
        return self.models[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "timeframe": self.timeframe,
            "horizon": self.horizon,
            "level": self.level,
            "symbols": self.symbols,
            "n_origins": self.n_origins,
            "first_origin": iso(self.first_origin) if self.first_origin is not None else None,
            "last_origin": iso(self.last_origin) if self.last_origin is not None else None,
            "refit_every": self.refit_every,
            "models": {k: v.to_json() for k, v in self.models.items()},
            "skipped": self.skipped,
        }


def _spec_model(
    spec: ModelSpec, tf: Timeframe, horizon: int, level: float
) -> tuple[str, BaseForecaster]:
    if isinstance(spec, BaseForecaster):
        return spec.name, spec
    if isinstance(spec, str):
        return spec, make_model(spec, tf, horizon, level=level)
    label, second = spec
    if isinstance(second, BaseForecaster):
        return label, second
    return label, make_model(label, tf, horizon, level=level, **dict(second))


def _clone(model: BaseForecaster) -> BaseForecaster:
    """A fresh, unfitted model with the same settings."""
    import copy

    m = copy.copy(model)
    m.fitted = False
    m.version = None
    if hasattr(m, "params"):
        m.params = None
    return m


def _pinball(q: float, pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    d = actual - pred
    return np.maximum(q * d, (q - 1.0) * d)


def interval_score(lo: np.ndarray, hi: np.ndarray, y: np.ndarray, level: float) -> np.ndarray:
    """Winkler's interval score of ``[lo, hi]`` at ``level``: width plus ``2 / (1 - level)``
    times the distance by which ``y`` falls outside (lower is better; a proper score)."""
    k = 2.0 / (1.0 - level)
    return (hi - lo) + k * np.maximum(lo - y, 0.0) + k * np.maximum(y - hi, 0.0)


def mase_scale(close: np.ndarray, rows: np.ndarray, window: int) -> np.ndarray:
    """In-sample one-step naive MAE relative to price over the ``window`` rows up to each row."""
    diffs = np.abs(np.diff(close)) / close[:-1]
    csum = np.concatenate(([0.0], np.cumsum(diffs)))
    w = np.minimum(rows, window)
    return np.where(w > 0, (csum[rows] - csum[rows - w]) / np.maximum(w, 1), np.nan)


def _metrics(
    P: np.ndarray, N: np.ndarray, A: np.ndarray, S: np.ndarray, level: float
) -> dict[str, Any]:
    """``P``/``N``: (k, 5) model/naive [pred, lo, hi, lo95, hi95] relative to the origin close;
    ``A``: (k,) actual relative close; ``S``: (k,) in-sample one-step MAE relative to close."""
    k = len(A)
    if k == 0:
        return {"samples": 0}
    e = np.abs(P[:, 0] - A)
    en = np.abs(N[:, 0] - A)
    a = (1 - level) / 2
    qs = ((0.5, 0), (a, 1), (1 - a, 2), (0.025, 3), (0.975, 4))
    pin = sum(np.mean(_pinball(q, P[:, j], A)) for q, j in qs)
    pin_n = sum(np.mean(_pinball(q, N[:, j], A)) for q, j in qs)
    move = np.sign(P[:, 0] - 1.0)
    real = np.sign(A - 1.0)
    hit = np.where(move == 0, 0.5, (move == real).astype(float))
    mae = float(np.mean(e))
    mae_n = float(np.mean(en))
    iscore = float(np.mean(interval_score(P[:, 1], P[:, 2], A, level)))
    iscore_n = float(np.mean(interval_score(N[:, 1], N[:, 2], A, level)))
    width_n = float(np.mean(N[:, 2] - N[:, 1]))
    return {
        "samples": int(k),
        "mae_pct": 100 * mae,
        "relative_mae": mae / mae_n if mae_n > 0 else 1.0,
        "mase": float(np.mean(e / S)),
        "log_error": float(np.mean(np.abs(np.log(P[:, 0] / A)))),
        "directional_accuracy": float(np.mean(hit)),
        "coverage": float(np.mean((A >= P[:, 1]) & (A <= P[:, 2]))),
        "coverage_95": float(np.mean((A >= P[:, 3]) & (A <= P[:, 4]))),
        "width_pct": float(100 * np.mean(P[:, 2] - P[:, 1])),
        "width_95_pct": float(100 * np.mean(P[:, 4] - P[:, 3])),
        "relative_pinball": float(pin / pin_n) if pin_n > 0 else 1.0,
        "relative_width": float(np.mean(P[:, 2] - P[:, 1]) / width_n) if width_n > 0 else 1.0,
        "interval_score_pct": 100 * iscore,
        "relative_interval_score": iscore / iscore_n if iscore_n > 0 else 1.0,
    }


def _origin_rows(
    n: int, first: int, horizon: int, origins: int | Sequence[int], span: int | None
) -> list[int]:
    last = n - 2  # at least one realised step after the origin
    if not isinstance(origins, int):
        return sorted({int(o) for o in origins if first <= int(o) <= last})
    lo = first if span is None else max(first, n - 1 - horizon - span)
    hi = n - 1 - horizon
    if hi < lo:
        return []
    if origins <= 1:
        return [hi]
    return sorted({int(round(x)) for x in np.linspace(lo, hi, origins)})


def backtest(
    frame: pl.DataFrame | Mapping[str, pl.DataFrame],
    tf: Timeframe | str,
    models: Sequence[ModelSpec],
    horizon: int,
    *,
    origins: int | Sequence[int] = 200,
    span: int | None = None,
    level: float = DEFAULT_LEVEL,
    refit_every: int = 1,
) -> BacktestResult:
    """Rolling-origin evaluation of ``models`` (names, ``(name, params)`` or model instances).

    ``frame`` is one candle frame or ``{symbol: frame}``. ``origins`` is a count (spread evenly
    over the last ``span`` candles that still have ``horizon`` candles after them, or over all
    candles with enough history when ``span`` is None) or explicit row indexes. At each origin
    every model is refitted on the rows up to and including it (``refit_every=k``: refit at
    every k-th origin, predicting from the latest data in between). Naive last-close is always
    evaluated too and is the denominator of ``relative_mae`` and ``relative_pinball``.
    Errors are measured relative to the origin close, so that series and eras with different
    price levels weigh alike.
    """
    tf = TIMEFRAMES[tf] if isinstance(tf, str) else tf
    frames = dict(frame) if isinstance(frame, Mapping) else {"series": frame}
    labelled = _labelled(models, tf, horizon, level)
    first_needed = max(m.min_history() for _, m in labelled)
    store = {lb: _Scored() for lb, _ in labelled}
    result = BacktestResult(tf.code, horizon, level, list(frames), 0, None, None, refit_every)
    for sym, fr in frames.items():
        rows = _origin_rows(fr.height, first_needed - 1, horizon, origins, span)
        if not rows:
            result.skipped[sym] = str(InsufficientHistoryError(fr.height, first_needed + horizon))
            continue
        _run_series(sym, fr, tf, labelled, rows, horizon, level, refit_every, store, result)
    if result.n_origins == 0:
        raise InsufficientHistoryError(
            max((f.height for f in frames.values()), default=0),
            first_needed + horizon,
            what="backtest",
        )
    naive = np.asarray(store["naive"].P)
    for nm, st in store.items():
        result.models[nm] = _report(nm, st, naive, horizon, list(frames), level)
    return result


def _labelled(
    models: Sequence[ModelSpec], tf: Timeframe, horizon: int, level: float
) -> list[tuple[str, BaseForecaster]]:
    """``(label, prototype)`` per model, naive last-close appended when missing."""
    labelled = [_spec_model(s, tf, horizon, level) for s in models]
    names = [lb for lb, _ in labelled]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model labels in backtest: {names}")
    if "naive" not in names:
        labelled.append(("naive", NaiveForecaster(tf, horizon, level=level)))
    elif labelled[names.index("naive")][1].name != "naive":
        raise ValueError("the label 'naive' is reserved for the naive baseline")
    for lb, m in labelled:
        if m.horizon < horizon:
            raise CoinpredictError(
                f"model {lb} was trained for horizon {m.horizon}, the backtest asks {horizon}"
            )
    return labelled


@dataclass
class _Scored:
    """Scored (origin, step) pairs of one model: forecasts and outcomes relative to the
    origin close, MASE scale, step, symbol; fit+predict seconds per origin."""

    P: list[tuple[float, ...]] = field(default_factory=list)
    A: list[float] = field(default_factory=list)
    S: list[float] = field(default_factory=list)
    h: list[int] = field(default_factory=list)
    sym: list[str] = field(default_factory=list)
    sec: list[float] = field(default_factory=list)

    def add(self, fc: Forecast, hit: list[tuple[int, float]], last: float, scale: float, sym: str):
        for h, actual in hit:
            k = h - 1
            vals = (fc.close[k], fc.lower[k], fc.upper[k], fc.lower_95[k], fc.upper_95[k])
            self.P.append(tuple(v / last for v in vals))
            self.A.append(actual / last)
            self.S.append(scale)
            self.h.append(h)
            self.sym.append(sym)


def _run_series(
    sym: str,
    fr: pl.DataFrame,
    tf: Timeframe,
    labelled: list[tuple[str, BaseForecaster]],
    rows: list[int],
    horizon: int,
    level: float,
    refit_every: int,
    store: dict[str, _Scored],
    result: BacktestResult,
) -> None:
    """Refit and forecast every model at each origin row of one series; score the outcomes."""
    ts = fr["timestamp"].to_numpy()
    close = fr["close"].cast(pl.Float64).to_numpy()
    pos = {int(t): i for i, t in enumerate(ts)}
    window = max(m.window for _, m in labelled)
    scales = mase_scale(close, np.asarray(rows), window)
    fitted: dict[str, BaseForecaster] = {}
    for j, o in enumerate(rows):
        origin_ts = int(ts[o])
        targets = ((h, pos.get(tf.add(origin_ts, h))) for h in range(1, horizon + 1))
        hit = [(h, float(close[r])) for h, r in targets if r is not None]
        if not hit:
            continue
        sub = fr.slice(0, o + 1)
        for label, proto in labelled:
            t0 = time.perf_counter()
            if j % refit_every == 0 or label not in fitted:
                fitted[label] = _clone(proto).fit(sub)
            fc = fitted[label].predict(sub, horizon=horizon, level=level)
            store[label].sec.append(time.perf_counter() - t0)
            store[label].add(fc, hit, float(close[o]), float(scales[j]), sym)
        result.n_origins += 1
        first = result.first_origin
        result.first_origin = origin_ts if first is None else min(first, origin_ts)
        result.last_origin = max(result.last_origin or origin_ts, origin_ts)


def _report(
    name: str, st: _Scored, naive: np.ndarray, horizon: int, symbols: list[str], level: float
) -> ModelReport:
    P, A, S = np.asarray(st.P), np.asarray(st.A), np.asarray(st.S)
    hz, sy = np.asarray(st.h), np.asarray(st.sym)
    overall = _metrics(P, naive, A, S, level)
    secs = np.asarray(st.sec)
    overall["fit_predict_ms_mean"] = float(1000 * secs.mean())
    overall["fit_predict_ms_p95"] = float(1000 * np.quantile(secs, 0.95))
    return scoped_report(name, overall, P, naive, A, S, hz, sy, horizon, symbols, level)


def scoped_report(
    name: str,
    overall: dict[str, Any],
    P: np.ndarray,
    N: np.ndarray,
    A: np.ndarray,
    S: np.ndarray,
    hz: np.ndarray,
    sy: np.ndarray,
    horizon: int,
    symbols: list[str],
    level: float,
) -> ModelReport:
    """``overall`` beside the same metrics per step and per symbol."""
    per_h = []
    for h in range(1, horizon + 1):
        sel = hz == h
        per_h.append({"h": h, **_metrics(P[sel], N[sel], A[sel], S[sel], level)})
    per_sym = {}
    for s in symbols:
        sel = sy == s
        if sel.any():
            per_sym[s] = _metrics(P[sel], N[sel], A[sel], S[sel], level)
    return ModelReport(name, _clean(overall), _clean(per_h), _clean(per_sym))


def _clean(obj: Any) -> Any:
    """Round floats for JSON and replace non-finite values by None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    return obj


COLUMNS = (
    ("relative_mae", "relMAE", "{:.4f}"),
    ("mase", "MASE", "{:.3f}"),
    ("log_error", "logErr", "{:.4f}"),
    ("directional_accuracy", "dir", "{:.3f}"),
    ("coverage", "cov", "{:.3f}"),
    ("coverage_95", "cov95", "{:.3f}"),
    ("width_pct", "width%", "{:.2f}"),
    ("relative_pinball", "relPin", "{:.4f}"),
)


def format_table(result: BacktestResult, *, per_horizon: bool = False) -> str:
    """A plain-text table of a backtest (used by ``bench/forecast.py`` and the CLI)."""
    head = f"{'model':<10} {'scope':<12}" + "".join(f"{c[1]:>9}" for c in COLUMNS) + f"{'ms':>9}"
    lines = [head, "-" * len(head)]

    def row(name: str, scope: str, m: dict[str, Any], ms: float | None = None) -> str:
        cells = "".join(
            f"{(c[2].format(m[c[0]]) if m.get(c[0]) is not None else '-'):>9}" for c in COLUMNS
        )
        return f"{name:<10} {scope:<12}{cells}" + (f"{ms:>9.2f}" if ms is not None else "")

    for nm, rep in result.models.items():
        lines.append(row(nm, "overall", rep.overall, rep.overall.get("fit_predict_ms_mean")))
        if per_horizon:
            for m in rep.per_horizon:
                lines.append(row(nm, f"h={m['h']}", m))
        if len(rep.per_symbol) > 1:
            for s, m in rep.per_symbol.items():
                lines.append(row(nm, s[:12], m))
    return "\n".join(lines)
