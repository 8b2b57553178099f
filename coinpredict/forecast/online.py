"""Online calibration of served bands from realised forecasts (adaptive conformal inference).

Per series and forecast step ``h`` there are four numbers ``theta[h-1]``, one per band edge
(lower, upper, lower_95, upper_95): the log of a multiplier applied to that edge's distance from
the point forecast (in log price). Each time a served forecast's candle closes, every edge is
scored and its ``theta`` moves by ``eta * (miss - tail)``, where ``tail`` is the edge's nominal
miss rate ((1 - level) / 2 for the main band, 0.025 for the 95% band): a miss widens the edge by
``eta * (1 - tail)``, a hit narrows it by ``eta * tail``. This is quantile tracking, the
proportional part of conformal PID control (Angelopoulos, Candès & Tibshirani 2023), on a log
scale, and the update of adaptive conformal inference (Gibbs & Candès 2021): as long as
``theta`` stays inside ``[-bound, bound]``, the long-run miss rate of every edge is within
``2 * bound / (eta * T)`` of its nominal rate after ``T`` scored forecasts, whatever the regime.
``theta`` is clipped to that range (per timeframe, :data:`PARAMS`), so a band never strays far
from what the model gives.

Besides the per-step ``theta`` there is one ``common`` number per edge, shared by every step of
the series: at each run it moves by ``eta_common`` times the summed ``miss - tail`` of every step
scored in that run, and the edge is widened by ``exp(clip(theta[h] + common))``. On a daily
series a step learns from one outcome a day, up to ``H`` days late; ``common`` learns from all
``H`` outcomes of the day, so the band follows a change of regime ``H`` times faster while
``theta`` keeps the steps' differences. ``eta_common = 0`` switches it off.

The state is small (``4 * H`` numbers plus the served forecasts still waiting for a candle) and
belongs to one model version: a promotion or rollback starts it afresh. The arithmetic here is
shared by ``predict`` (one forecast at a time) and the backtest's serving simulation.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from coinpredict.forecast.types import WIDE_LEVEL, Forecast

#: Learning rate of ``theta`` per scored forecast and ``|theta| <= bound`` (an edge's distance
#: from the point stays within ``exp(-bound)..exp(bound)`` times the model's), per timeframe:
#: what the split evaluation chose on candles before 2021-07-01 among the rates whose
#: coverage guarantee after a year is within 0.03 (``evaluation.admissible``; on 1d only 0.2
#: with bound 1.5 is; docs/forecasting.md).
PARAMS: dict[str, tuple[float, float, float]] = {
    "1h": (0.02, float(np.log(1.5)), 0.0),
    "1d": (0.2, float(np.log(1.5)), 0.0),
}
ETA, BOUND = 0.05, float(np.log(3.0))  # any other timeframe; BOUND is also the widest bound
ETA_COMMON = 0.0
STATE_FORMAT = 1


def params(tf_code: str) -> tuple[float, float, float]:
    """(learning rate, bound, common learning rate) of the online calibration of a timeframe."""
    return PARAMS.get(tf_code, (ETA, BOUND, ETA_COMMON))


def update_common(
    common: np.ndarray, miss: np.ndarray, tail: np.ndarray, eta_common: float, bound: float
) -> None:
    """In place: ``common += eta_common * sum(miss - tail)`` over the ``(m, 4)`` misses of one
    run, clipped to ``bound``."""
    if eta_common and len(miss):
        common[:] = np.clip(common + eta_common * (miss - tail).sum(axis=0), -bound, bound)


def effective(theta: np.ndarray, common: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """The ``(H, 4)`` log multipliers served: per-step ``theta`` plus the shared ``common``."""
    return np.clip(theta + common[None, :], -bound, bound)


def tails(level: float) -> np.ndarray:
    """Nominal miss rate of each edge: lower, upper, lower_95, upper_95."""
    a = (1.0 - level) / 2.0
    b = (1.0 - WIDE_LEVEL) / 2.0
    return np.array([a, a, b, b])


def widen(offsets: np.ndarray, theta: np.ndarray, mult: np.ndarray | None = None) -> np.ndarray:
    """Apply ``theta`` (``(H, 4)``) to log offsets ``(5, H)`` [point, lo, hi, lo95, hi95] from
    the origin close: each edge's distance from the point is multiplied by ``exp(theta)``
    (``mult``: ``exp(theta.T)`` when the caller has it); the order
    ``lo95 <= lo <= point <= hi <= hi95`` is kept."""
    if mult is None:
        mult = np.exp(theta.T)
    out = np.empty_like(offsets)
    mid = offsets[0]
    out[0] = mid
    out[1:] = mid + (offsets[1:] - mid) * mult
    np.minimum(out[3], out[1], out=out[3])
    np.maximum(out[4], out[2], out=out[4])
    return out


#: ``actual - edge`` times this is negative exactly when the edge is missed.
_SIDE = np.array([1.0, -1.0, 1.0, -1.0])


def misses(edges: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """``(m, 4)`` 0/1 misses of edges ``(m, 4)`` [lo, hi, lo95, hi95] by ``actual`` ``(m,)``
    (any one scale for both)."""
    return ((actual[:, None] - edges) * _SIDE < 0).astype(np.float64)


def update(
    theta: np.ndarray,
    steps: np.ndarray,
    miss: np.ndarray,
    tail: np.ndarray,
    eta: float = ETA,
    bound: float = BOUND,
) -> None:
    """In place: ``theta[steps[k]] += eta * (miss[k] - tail)`` in order, clipped to ``bound``.
    ``steps`` are 0-based step indexes; repeated steps are applied one after the other."""
    if len(steps) <= 1 or np.all(np.diff(np.sort(steps)) > 0):
        theta[steps] = np.minimum(np.maximum(theta[steps] + eta * (miss - tail), -bound), bound)
        return
    for k in range(len(steps)):
        row = steps[k]
        theta[row] = np.clip(theta[row] + eta * (miss[k] - tail), -bound, bound)


@dataclass
class Pending:
    """A served forecast some of whose candles have not closed yet (log-free, plain prices)."""

    steps: list[int]  # 0-based forecast step of each entry
    timestamps: list[int]
    edges: list[list[float]]  # per step: [lower, upper, lower_95, upper_95]

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "timestamps": self.timestamps, "edges": self.edges}

    def part(self, keep: list[int]) -> Pending:
        return Pending(
            [self.steps[k] for k in keep],
            [self.timestamps[k] for k in keep],
            [self.edges[k] for k in keep],
        )


@dataclass
class OnlineState:
    """The online calibration of one series, for the model version it was built with."""

    version: str
    level: float
    theta: np.ndarray  # (H, 4)
    pending: list[Pending] = field(default_factory=list)
    scored: int = 0
    last_scored: int | None = None  # open time of the newest candle scored
    common: np.ndarray = field(default_factory=lambda: np.zeros(4))  # shared by every step
    bound: float = BOUND  # of the last update: what ``serve`` clips ``theta + common`` to

    @classmethod
    def fresh(cls, version: str, horizon: int, level: float) -> OnlineState:
        return cls(version, float(level), np.zeros((horizon, 4)))

    def fits(self, version: str, horizon: int, level: float) -> bool:
        """Whether this state belongs to ``version`` at ``level`` and covers ``horizon``."""
        return (
            self.version == version
            and abs(self.level - level) < 1e-12
            and self.theta.shape[0] >= horizon
        )

    def observe(
        self,
        close_at: Mapping[int, float],
        newest: int,
        eta: float = ETA,
        bound: float = BOUND,
        eta_common: float = 0.0,
    ) -> int:
        """Score every pending step whose candle (open time ``<= newest``) is in ``close_at``;
        a step whose candle is missing is dropped unscored. Returns how many were scored."""
        tail = tails(self.level)
        keep: list[Pending] = []
        done = 0
        all_miss: list[np.ndarray] = []
        self.bound = bound
        for p in self.pending:
            idx = [k for k, t in enumerate(p.timestamps) if t <= newest and t in close_at]
            if idx:
                actual = np.array([close_at[p.timestamps[k]] for k in idx])
                miss = misses(np.asarray(p.edges, dtype=np.float64)[idx], actual)
                steps = np.asarray([p.steps[k] for k in idx])
                update(self.theta, steps, miss, tail, eta, bound)
                all_miss.append(miss)
                done += len(idx)
                self.last_scored = max(self.last_scored or 0, max(p.timestamps[k] for k in idx))
            rest = [k for k, t in enumerate(p.timestamps) if t > newest]
            if rest:
                keep.append(p.part(rest))
        if all_miss:
            update_common(self.common, np.concatenate(all_miss), tail, eta_common, bound)
        self.pending = keep
        self.scored += done
        return done

    def serve(self, fc: Forecast) -> Forecast:
        """``fc`` with its bands recalibrated by ``theta``; remembered until its candles close."""
        H = fc.horizon
        c0 = fc.last_close
        rows = np.array([fc.close, fc.lower, fc.upper, fc.lower_95, fc.upper_95])
        theta = effective(self.theta[:H], self.common, self.bound)
        adj = c0 * np.exp(widen(np.log(rows / c0), theta))
        out = replace(
            fc,
            close=adj[0].tolist(),
            lower=adj[1].tolist(),
            upper=adj[2].tolist(),
            lower_95=adj[3].tolist(),
            upper_95=adj[4].tolist(),
            extra={**fc.extra, "online_scored": self.scored},
        )
        self.pending.append(Pending(list(range(H)), list(out.timestamps), adj[1:].T.tolist()))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT,
            "version": self.version,
            "level": self.level,
            "theta": np.round(self.theta, 6).tolist(),
            "common": np.round(self.common, 6).tolist(),
            "bound": self.bound,
            "pending": [p.to_json() for p in self.pending],
            "scored": self.scored,
            "last_scored": self.last_scored,
        }

    @classmethod
    def from_json(cls, d: Any) -> OnlineState:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on anything but a state."""
        if not isinstance(d, dict) or d.get("format_version") != STATE_FORMAT:
            raise ValueError("not an online calibration state")
        theta = np.asarray(d["theta"], dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != 4 or not np.all(np.isfinite(theta)):
            raise ValueError("bad theta")
        common = np.asarray(d.get("common", [0.0] * 4), dtype=np.float64)
        if common.shape != (4,) or not np.all(np.isfinite(common)):
            raise ValueError("bad common")
        bound = min(float(d.get("bound", BOUND)), BOUND)
        if not bound >= 0:
            raise ValueError("bad bound")
        pending = [
            Pending(
                [int(k) for k in p["steps"]],
                [int(t) for t in p["timestamps"]],
                [[float(x) for x in e] for e in p["edges"]],
            )
            for p in d["pending"]
        ]
        for p in pending:
            if not len(p.steps) == len(p.timestamps) == len(p.edges):
                raise ValueError("bad pending forecast")
            if any(not 0 <= k < theta.shape[0] for k in p.steps):
                raise ValueError("bad pending forecast step")
        return cls(
            str(d["version"]),
            float(d["level"]),
            np.clip(theta, -BOUND, BOUND),
            pending,
            int(d["scored"]),
            None if d.get("last_scored") is None else int(d["last_scored"]),
            np.clip(common, -BOUND, BOUND),
            bound,
        )


#: ``format_version`` of a calibration state file whose served forecasts still waiting for a
#: candle are packed (see :func:`pack_state`); files of format 1 (plain lists) are still read.
PACKED_FORMAT = 2


def _b64(values: Any, dtype: str) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: Any, dtype: str) -> Any:
    if not isinstance(text, str):
        raise TypeError("packed values are not text")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % np.dtype(dtype).itemsize:
        raise ValueError("packed values cut short")
    return np.frombuffer(raw, dtype=dtype)


def pack_state(doc: dict[str, Any]) -> dict[str, Any]:
    """``OnlineState.to_json()`` with its pending forecasts packed: their steps, open times and
    edges as base64 of little-endian int64 / int64 / float64 (exact), plus each forecast's
    length. Writing and reading the plain lists (~2,300 floats for 1h) cost ~3.6 ms per series
    in JSON; packed, ~0.6 ms to write and ~1.2 ms to read (``from_json`` included). Still one
    JSON document, in the same file."""
    pending = doc["pending"]
    packed = {
        "lengths": [len(p["steps"]) for p in pending],
        "steps": _b64([k for p in pending for k in p["steps"]], "<i8"),
        "timestamps": _b64([t for p in pending for t in p["timestamps"]], "<i8"),
        "edges": _b64([e for p in pending for e in p["edges"]] or [[]], "<f8"),
    }
    return {**doc, "format_version": PACKED_FORMAT, "pending": packed}


def unpack_state(doc: Any) -> Any:
    """The plain ``OnlineState.from_json`` document of a packed one (others as they are);
    ``ValueError``/``TypeError``/``KeyError`` when the packed part does not add up."""
    if not isinstance(doc, dict) or doc.get("format_version") != PACKED_FORMAT:
        return doc
    packed = doc["pending"]
    lengths = [int(n) for n in packed["lengths"]]
    steps = _unb64(packed["steps"], "<i8").tolist()
    times = _unb64(packed["timestamps"], "<i8").tolist()
    edges = _unb64(packed["edges"], "<f8")
    total = sum(lengths)
    if min(lengths, default=0) < 0 or not len(steps) == len(times) == total == len(edges) // 4:
        raise ValueError("packed pending forecasts do not add up")
    if len(edges) % 4:
        raise ValueError("packed edges are not rows of four")
    rows = edges.reshape(-1, 4).tolist()
    pending, at = [], 0
    for n in lengths:
        pending.append(
            {
                "steps": steps[at : at + n],
                "timestamps": times[at : at + n],
                "edges": rows[at : at + n],
            }
        )
        at += n
    return {**doc, "format_version": STATE_FORMAT, "pending": pending}
