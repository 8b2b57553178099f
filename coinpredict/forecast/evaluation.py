"""An evaluation that cannot flatter: tune before a split date, measure after it only.

Every candle of each series is an origin, as in the product (``predict`` runs at every closed
candle). Models are refitted every ``refit_every`` candles on the data up to the origin, as
``train`` does; in between, each origin is served from the last fit with its conformal
quantiles recomputed every ``calibrate_every`` candles, and the online calibration
(:mod:`coinpredict.forecast.online`) is updated from every served forecast whose candle has
closed by the origin, exactly as ``predict`` does.

Choices: the learning rate of the online calibration and, per series, which band is served
(the learned model's volatility-scaled band or naive's empirical band, both calibrated online)
are chosen by the interval score on the (origin, step) pairs whose candle closed *before* the
split. The headline figures use origins at or after the split only. The baseline everywhere is
naive last-close with its empirical band (a 2-year window of h-step log returns at the same
level, no online calibration): the denominator of every relative figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from coinpredict.base.timeframes import DAY_MS, TIMEFRAMES, Timeframe, iso
from coinpredict.forecast import online
from coinpredict.forecast.backtest import (
    ModelReport,
    _clean,
    _clone,
    _metrics,
    interval_score,
    mase_scale,
    scoped_report,
)
from coinpredict.forecast.models import BaseForecaster, NaiveForecaster, make_model
from coinpredict.forecast.types import DEFAULT_LEVEL, InsufficientHistoryError

#: Learning rates and bounds (``|theta| <= log(b)``) of the online calibration tried on the
#: tuning period.
ETAS = (0.02, 0.05, 0.1, 0.2)
BOUNDS = (1.5, 3.0)
#: Learning rates of the term shared by every step (``online.update_common``; 0 = none) tried
#: by default: none (docs/forecasting.md says why; ``bench/forecast.py --etas-common`` tries some).
ETAS_COMMON = (0.0,)
#: What the online calibration must be able to guarantee before the tuning period may choose
#: it: over a year of scored forecasts per step, the band's coverage within this much of the
#: nominal level whatever the regime (the coverage targets are nominal +- 0.03). See
#: :func:`guarantee`; ``None`` switches the rule off.
COVERAGE_TOLERANCE = 0.03
GUARANTEE_DAYS = 365
#: Origins of one bootstrap cluster (their outcomes overlap within a cluster, not across).
CLUSTER_DAYS = {"1h": 7, "1d": 28, "1w": 91, "1M": 365}
BOOTSTRAP = 500
YEAR_DAYS = 365


def guarantee(eta: float, bound: float, tf: Timeframe) -> float:
    """The worst distance of the band's coverage from its nominal level after a year of scored
    forecasts per step that the online calibration guarantees (while ``theta`` stays within
    ``bound``): each of the two edges misses within ``2 * bound / (eta * T)`` of its nominal
    rate (module docstring of :mod:`coinpredict.forecast.online`), ``T`` forecasts a year."""
    scored = GUARANTEE_DAYS * DAY_MS // tf.step_ms
    return 2 * 2 * bound / (eta * scored) if eta > 0 else float("inf")


def admissible(
    grid: Sequence[tuple[float, float, float]], tf: Timeframe, tolerance: float | None
) -> list[tuple[float, float, float]]:
    """The (rate, bound, common rate) candidates whose :func:`guarantee` is within
    ``tolerance``; where none is, those with the tightest guarantee. A slow rate that would
    leave a daily series' coverage off target for over a year is thus never chosen, however
    well it scored on the tuning year."""
    if tolerance is None:
        return list(grid)
    g = {c: guarantee(c[0], c[1], tf) for c in grid}
    ok = [c for c in grid if g[c] <= tolerance]
    return ok or [c for c in grid if g[c] == min(g.values())]


def baseline(tf: Timeframe, horizon: int, level: float) -> NaiveForecaster:
    """Naive last-close with empirical bands over a 2-year window: the yardstick."""
    window = max(int(2 * YEAR_DAYS * DAY_MS // tf.step_ms), horizon + 40)
    return NaiveForecaster(tf, horizon, level=level, window=window)


@dataclass
class SeriesData:
    """The origins of one series and what happened after them."""

    symbol: str
    rows: np.ndarray  # frame rows of the origins
    ts: np.ndarray  # (k,) origin open times
    targets: np.ndarray  # (k, H) open times of the forecast candles
    actual: np.ndarray  # (k, H) log(close[target] / close[origin]); nan = no such candle
    scale: np.ndarray  # (k,) MASE scale
    paths: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (k, 5, H) offsets


def serve_path(
    frame: pl.DataFrame,
    proto: BaseForecaster,
    rows: np.ndarray,
    horizon: int,
    level: float,
    refit_every: int,
    calibrate_every: int,
) -> np.ndarray:
    """Band offsets ``(len(rows), 5, H)`` served at every origin row, refitting every
    ``refit_every`` origins on the rows up to the refit origin."""
    out = np.empty((len(rows), 5, horizon))
    for j0 in range(0, len(rows), refit_every):
        block = rows[j0 : j0 + refit_every]
        model = _clone(proto).fit(frame.slice(0, int(block[0]) + 1))
        out[j0 : j0 + len(block)] = model.band_path(
            frame, block, horizon=horizon, level=level, calibrate_every=calibrate_every
        )
    return out


def series_data(
    symbol: str,
    frame: pl.DataFrame,
    tf: Timeframe,
    horizon: int,
    first: int,
    window: int,
    start_ms: int | None = None,
) -> SeriesData:
    """Every row from ``first`` (and from ``start_ms`` on) but the last is an origin."""
    ts = frame["timestamp"].to_numpy().astype(np.int64)
    logc = np.log(frame["close"].cast(pl.Float64).to_numpy())
    if start_ms is not None:
        first = max(first, int(np.searchsorted(ts, start_ms)))
    rows = np.arange(first, frame.height - 1)
    steps = np.arange(1, horizon + 1)
    if tf.is_monthly:
        targets = np.array([[tf.add(int(t), int(h)) for h in steps] for t in ts[rows]])
    else:
        targets = ts[rows][:, None] + steps[None, :] * tf.step_ms
    where = np.searchsorted(ts, targets)
    found = (where < len(ts)) & (ts[np.minimum(where, len(ts) - 1)] == targets)
    actual = np.where(found, logc[np.minimum(where, len(ts) - 1)] - logc[rows][:, None], np.nan)
    close = np.exp(logc)
    return SeriesData(symbol, rows, ts[rows], targets, actual, mase_scale(close, rows, window))


def track(
    data: SeriesData,
    base: np.ndarray,
    level: float,
    eta: float,
    bound: float = online.BOUND,
    eta_common: float = 0.0,
) -> np.ndarray:
    """The bands ``predict`` would have served with online calibration: at each origin, every
    forecast whose candle has closed by then has updated ``theta`` (the arithmetic of
    :mod:`coinpredict.forecast.online`, one origin after the other)."""
    k, _, H = base.shape
    theta = np.zeros((H, 4))
    common = np.zeros(4)
    tail = online.tails(level)
    jj, hh = np.nonzero(np.isfinite(data.actual))
    order = np.argsort(data.targets[jj, hh], kind="stable")
    jj, hh = jj[order], hh[order]
    y = data.actual[jj, hh]
    due = np.searchsorted(data.targets[jj, hh], data.ts, side="right")  # events by origin
    served = np.empty_like(base)
    mult = np.ones((4, H))
    done = 0
    for j in range(k):
        if due[j] > done:
            ej, eh = jj[done : due[j]], hh[done : due[j]]
            miss = online.misses(served[ej, 1:, eh], y[done : due[j]])
            online.update(theta, eh, miss, tail, eta, bound)
            online.update_common(common, miss, tail, eta_common, bound)
            mult = np.exp(online.effective(theta, common, bound).T)
            done = int(due[j])
        served[j] = online.widen(base[j], theta, mult)  # theta unused when mult is given
    return served


@dataclass
class Pairs:
    """Scored (origin, step) pairs of one model over several series, relative to origin close."""

    P: np.ndarray  # (m, 5)
    N: np.ndarray  # (m, 5) the baseline on the same pairs
    A: np.ndarray  # (m,)
    S: np.ndarray
    h: np.ndarray
    sym: np.ndarray
    cluster: np.ndarray
    origin: np.ndarray


def _pairs(
    data: list[SeriesData], paths: Mapping[str, np.ndarray], select: str, tf: Timeframe, cut: int
) -> Pairs:
    """Pairs before the cut (``select='tune'``: candle closed before it) or from origins at or
    after it (``'test'``); ``paths[symbol]`` is that series' served offsets."""
    parts: list[list[np.ndarray]] = [[] for _ in range(8)]
    block = CLUSTER_DAYS.get(tf.code, 28) * DAY_MS
    for i, d in enumerate(data):
        ok = np.isfinite(d.actual)
        if select == "tune":
            ok &= d.targets < cut
        else:
            ok &= (d.ts >= cut)[:, None]
        jj, hh = np.nonzero(ok)
        parts[0].append(np.exp(paths[d.symbol][jj, :, hh]))
        parts[1].append(np.exp(d.paths["naive"][jj, :, hh]))
        parts[2].append(np.exp(d.actual[jj, hh]))
        parts[3].append(d.scale[jj])
        parts[4].append(hh + 1)
        parts[5].append(np.full(len(jj), d.symbol))
        parts[6].append(i * 100_000 + (d.ts[jj] - cut) // block)
        parts[7].append(d.ts[jj])
    return Pairs(*(np.concatenate(p) if p else np.empty(0) for p in parts))


def _tune_score(p: Pairs, level: float) -> tuple[float, float, float, int]:
    """(mean interval score, mean width, |coverage - level|, pairs) of tuning pairs."""
    if not len(p.A):
        return 0.0, 0.0, 0.0, 0
    cov = float(np.mean((p.A >= p.P[:, 1]) & (p.A <= p.P[:, 2])))
    return (
        float(np.mean(interval_score(p.P[:, 1], p.P[:, 2], p.A, level))),
        float(np.mean(p.P[:, 2] - p.P[:, 1])),
        abs(cov - level),
        len(p.A),
    )


def _pick(scores: dict[str, tuple[float, float, float, int]], model: str) -> str:
    """The learned band only if its interval score is lower and it is not wider than naive's
    empirical band unless it also covers closer to the nominal level."""
    learned, naive = scores[model], scores["naive"]
    better = learned[0] < naive[0]
    earns_width = learned[1] <= naive[1] or learned[2] < naive[2]
    return model if better and earns_width else "naive"


def bootstrap(p: Pairs, level: float, reps: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """95% CIs by resampling whole origin clusters (per series, ``CLUSTER_DAYS`` of origins)."""
    ids, inv = np.unique(p.cluster, return_inverse=True)
    cols = np.stack(
        [
            np.ones(len(p.A)),
            (p.A >= p.P[:, 1]) & (p.A <= p.P[:, 2]),
            (p.A >= p.P[:, 3]) & (p.A <= p.P[:, 4]),
            p.P[:, 2] - p.P[:, 1],
            p.N[:, 2] - p.N[:, 1],
            interval_score(p.P[:, 1], p.P[:, 2], p.A, level),
            interval_score(p.N[:, 1], p.N[:, 2], p.A, level),
            np.abs(p.P[:, 0] - p.A),
            np.abs(p.N[:, 0] - p.A),
        ],
        axis=1,
    ).astype(np.float64)
    sums = np.zeros((len(ids), cols.shape[1]))
    np.add.at(sums, inv, cols)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=reps)
    t = w @ sums  # (reps, 9)
    figs = {
        "coverage": t[:, 1] / t[:, 0],
        "coverage_95": t[:, 2] / t[:, 0],
        "relative_width": t[:, 3] / t[:, 4],
        "relative_interval_score": t[:, 5] / t[:, 6],
        "relative_mae": t[:, 7] / np.maximum(t[:, 8], 1e-300),
    }
    out: dict[str, Any] = {"clusters": len(ids)}
    for k, v in figs.items():
        out[k] = [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]
    return out


def rolling_coverage(p: Pairs, days: int = 30) -> dict[str, Any]:
    """Coverage of the main band over trailing ``days`` windows of origins, one value a day,
    pooled over series (from ``days`` after the first origin)."""
    if not len(p.A):
        return {"days": days, "values": []}
    day = (p.origin - p.origin.min()) // DAY_MS
    hit = ((p.A >= p.P[:, 1]) & (p.A <= p.P[:, 2])).astype(np.float64)
    n_days = int(day.max()) + 1
    hits = np.bincount(day, hit, n_days)
    cnt = np.bincount(day, None, n_days)
    ch, cc = np.cumsum(hits), np.cumsum(cnt)
    vals = []
    for d in range(days - 1, n_days):
        lo = d - days
        num = ch[d] - (ch[lo] if lo >= 0 else 0.0)
        den = cc[d] - (cc[lo] if lo >= 0 else 0.0)
        if den > 0:
            vals.append(float(num / den))
    return {
        "days": days,
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
        "values": [round(v, 4) for v in vals],
    }


@dataclass
class SplitResult:
    timeframe: str
    horizon: int
    level: float
    split: int
    eta: float
    bound: float  # the band multiplier stays within 1/bound .. bound
    eta_common: float
    candidates: list[tuple[float, float, float]]  # (rate, bound, common rate) admissible
    choice: dict[str, str]  # symbol -> served band ("ridge" or "naive")
    tuning: dict[str, dict[str, Any]]  # label -> tuning-period overall metrics
    models: dict[str, ModelReport]
    ci: dict[str, dict[str, Any]]
    rolling: dict[str, dict[str, Any]]
    first_origin: int
    last_origin: int
    skipped: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "timeframe": self.timeframe,
            "horizon": self.horizon,
            "level": self.level,
            "split": iso(self.split),
            "eta": self.eta,
            "eta_common": self.eta_common,
            "bound": self.bound,
            "candidates": [list(c) for c in self.candidates],
            "choice": self.choice,
            "first_origin": iso(self.first_origin),
            "last_origin": iso(self.last_origin),
            "tuning": _clean(self.tuning),
            "models": {k: v.to_json() for k, v in self.models.items()},
            "ci": _clean(self.ci),
            "rolling_30d_coverage": _clean(self.rolling),
            "skipped": self.skipped,
        }


def _prepare(
    frames: Mapping[str, pl.DataFrame],
    tf: Timeframe,
    protos: dict[str, BaseForecaster],
    horizon: int,
    level: float,
    refit_every: int,
    calibrate_every: int,
    start_ms: int,
    skipped: dict[str, str],
) -> list[SeriesData]:
    """Serve every candidate (and the baseline) at every origin of every series."""
    first = max(m.min_history() for m in protos.values())
    window = max(m.window for m in protos.values())
    out = []
    for sym, fr in frames.items():
        if fr.height < first + horizon + 1:
            skipped[sym] = str(InsufficientHistoryError(fr.height, first + horizon + 1))
            continue
        d = series_data(sym, fr, tf, horizon, first - 1, window, start_ms)
        if len(d.rows) == 0:
            skipped[sym] = f"no origin from {iso(start_ms)} on"
            continue
        for label, proto in protos.items():
            d.paths[label] = serve_path(
                fr, proto, d.rows, horizon, level, refit_every, calibrate_every
            )
        out.append(d)
    return out


def split_backtest(
    frames: pl.DataFrame | Mapping[str, pl.DataFrame],
    tf: Timeframe | str,
    horizon: int,
    split_ms: int,
    *,
    model: str = "ridge",
    level: float = DEFAULT_LEVEL,
    refit_every: int | None = None,
    calibrate_every: int | None = None,
    etas: Sequence[float] = ETAS,
    bounds: Sequence[float] = BOUNDS,
    etas_common: Sequence[float] = ETAS_COMMON,
    tolerance: float | None = COVERAGE_TOLERANCE,
    tune_days: int = YEAR_DAYS,
) -> SplitResult:
    """Tune on the candles before ``split_ms`` (origins from ``tune_days`` before it; the
    models are fitted on everything before each origin), report on the origins at or after
    it. Models are refitted every ``refit_every`` origins (default: a week of candles) and
    their conformal quantiles recomputed every ``calibrate_every`` (default: the same). The
    online rate and bound are chosen among those :func:`admissible` at ``tolerance``."""
    tf = TIMEFRAMES[tf] if isinstance(tf, str) else tf
    frames = dict(frames) if isinstance(frames, Mapping) else {"series": frames}
    per_day = max(1, int(DAY_MS // tf.step_ms))
    protos = {
        model: make_model(model, tf, horizon, level=level),
        "naive": baseline(tf, horizon, level),
    }
    skipped: dict[str, str] = {}
    refit = refit_every or 7 * per_day
    start = split_ms - tune_days * DAY_MS
    data = _prepare(
        frames, tf, protos, horizon, level, refit, calibrate_every or refit, start, skipped
    )
    if not data or not any((d.ts >= split_ms).any() for d in data):
        raise InsufficientHistoryError(
            max((f.height for f in frames.values()), default=0),
            max(m.min_history() for m in protos.values()) + horizon + 1,
            what="split backtest (no origin after the split)",
        )
    grid = [(eta, float(np.log(b)), ec) for eta in etas for b in bounds for ec in etas_common]
    grid = admissible(grid, tf, tolerance)
    (eta, bound, eta_c), choice, tracked, tuning = _choose(data, tf, split_ms, model, level, grid)
    variants = {
        "served": {d.symbol: tracked[choice[d.symbol], d.symbol] for d in data},
        f"{model}+online": {d.symbol: tracked[model, d.symbol] for d in data},
        "naive+online": {d.symbol: tracked["naive", d.symbol] for d in data},
        model: {d.symbol: d.paths[model] for d in data},
        "naive": {d.symbol: d.paths["naive"] for d in data},  # the baseline itself
    }
    symbols = [d.symbol for d in data]
    models, ci, rolling = {}, {}, {}
    for label, paths in variants.items():
        p = _pairs(data, paths, "test", tf, split_ms)
        overall = _metrics(p.P, p.N, p.A, p.S, level)
        models[label] = scoped_report(
            label, overall, p.P, p.N, p.A, p.S, p.h, p.sym, horizon, symbols, level
        )
        ci[label] = bootstrap(p, level)
        rolling[label] = rolling_coverage(p)
    return SplitResult(
        tf.code,
        horizon,
        level,
        split_ms,
        eta,
        round(float(np.exp(bound)), 6),
        eta_c,
        [(e, round(float(np.exp(b)), 6), c) for e, b, c in grid],
        choice,
        tuning,
        models,
        ci,
        rolling,
        int(min(d.ts[d.ts >= split_ms].min() for d in data if (d.ts >= split_ms).any())),
        int(max(d.ts.max() for d in data)),
        skipped,
    )


def _choose(
    data: list[SeriesData],
    tf: Timeframe,
    split_ms: int,
    model: str,
    level: float,
    grid: Sequence[tuple[float, float, float]],
) -> tuple[
    tuple[float, float, float],
    dict[str, str],
    dict[tuple[str, str], np.ndarray],
    dict[str, dict[str, Any]],
]:
    """On the tuning pairs only: per series the band (learned or naive, both calibrated online;
    see :func:`_pick`), and one learning rate and bound for all series (the lowest pooled
    interval score of the chosen bands). Returns the tracked bands of that pair."""
    best: (
        tuple[float, tuple[float, float, float], dict[str, str], dict[tuple[str, str], np.ndarray]]
        | None
    ) = None
    for eta, bound, eta_c in grid:
        choice: dict[str, str] = {}
        tracked: dict[tuple[str, str], np.ndarray] = {}
        total = 0.0
        for d in data:
            scores = {}
            for c in (model, "naive"):
                tracked[c, d.symbol] = track(d, d.paths[c], level, eta, bound, eta_c)
                p = _pairs([d], {d.symbol: tracked[c, d.symbol]}, "tune", tf, split_ms)
                scores[c] = _tune_score(p, level)
            c = _pick(scores, model)
            choice[d.symbol] = c
            total += scores[c][0] * scores[c][3]
        if best is None or total < best[0]:
            best = (total, (eta, bound, eta_c), choice, tracked)
    assert best is not None
    _, chosen, choice, tracked = best
    tuning = {}
    served = {d.symbol: tracked[choice[d.symbol], d.symbol] for d in data}
    for label, paths in (("served", served), ("naive", {d.symbol: d.paths["naive"] for d in data})):
        p = _pairs(data, paths, "tune", tf, split_ms)
        tuning[label] = _metrics(p.P, p.N, p.A, p.S, level) if len(p.A) else {"samples": 0}
    return chosen, choice, tracked, tuning


COLUMNS = (
    ("samples", "pairs", "{:d}"),
    ("coverage", "cov80", "{:.3f}"),
    ("coverage_95", "cov95", "{:.3f}"),
    ("relative_width", "width/nv", "{:.3f}"),
    ("relative_interval_score", "IS/nv", "{:.4f}"),
    ("relative_pinball", "pin/nv", "{:.4f}"),
    ("relative_mae", "MAE/nv", "{:.4f}"),
)


def format_split(res: SplitResult, *, per_horizon: bool = True, per_symbol: bool = True) -> str:
    head = f"{'model':<14} {'scope':<12}" + "".join(f"{c[1]:>10}" for c in COLUMNS)
    lines = [head, "-" * len(head)]

    def row(name: str, scope: str, m: dict[str, Any]) -> str:
        cells = "".join(
            f"{(c[2].format(m[c[0]]) if m.get(c[0]) is not None else '-'):>10}" for c in COLUMNS
        )
        return f"{name:<14} {scope:<12}{cells}"

    for nm, rep in res.models.items():
        lines.append(row(nm, "overall", rep.overall))
        ci = res.ci.get(nm, {})
        cells = [f" {ci[c[0]][0]:.3f}-{ci[c[0]][1]:.3f}" if c[0] in ci else "" for c in COLUMNS]
        lines.append(f"{'':<14} {'95% CI':<12}" + "".join(f"{c:>10}" for c in cells))
        if nm != "served":
            continue
        if per_horizon:
            lines += [row(nm, f"h={m['h']}", m) for m in rep.per_horizon]
        if per_symbol:
            lines += [row(nm, s[:12], m) for s, m in rep.per_symbol.items()]
    return "\n".join(lines)
