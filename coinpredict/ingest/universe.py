"""Which series a run works on: configured symbols, or ``top:N[:QUOTE]`` by 24h quote volume.

The top-N set is ranked from one ``fetch_tickers()`` call, stored in STATE_DIR/universe.json and
refreshed at most every ``top_refresh`` (default daily), so the set is stable between refreshes.
A symbol that leaves the top N is kept as ``inactive`` (its data stays; it is not deleted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coinpredict.base.clock import Clock
from coinpredict.base.config import Settings, TopN
from coinpredict.base.errors import ArtifactError, ConfigError
from coinpredict.base.series import Series
from coinpredict.base.symbols import validate_symbol
from coinpredict.local import atomic

log = logging.getLogger("coinpredict.ingest.universe")


def universe_path(state_dir: Path) -> Path:
    return state_dir / "universe.json"


def load_universe(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(universe_path(state_dir))
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("active"), list):
        raise ArtifactError(f"{universe_path(state_dir)} is not a valid symbol universe")
    return data


def rank_top(volumes: dict[str, float], top: TopN) -> list[str]:
    candidates = [
        (vol, sym)
        for sym, vol in volumes.items()
        if (top.quote is None or sym.endswith("/" + top.quote)) and vol == vol and vol > 0
    ]
    candidates.sort(key=lambda item: (-item[0], item[1]))
    picked: list[str] = []
    for _, sym in candidates:
        try:
            picked.append(validate_symbol(sym))
        except ConfigError:
            continue  # symbols we cannot store safely are never picked
        if len(picked) == top.n:
            break
    return picked


def resolve_symbols(
    settings: Settings,
    clock: Clock,
    quote_volumes: Callable[[str | None], dict[str, float]] | None,
) -> list[str]:
    """Configured symbols, or the cached/refreshed top-N set (no ``quote_volumes``: cache)."""
    if not isinstance(settings.symbols, TopN):
        return list(settings.symbols)
    top = settings.symbols
    cached = load_universe(settings.state_dir)
    now = clock.now_ms()
    fresh = (
        cached is not None
        and cached.get("spec") == str(top)
        and now - int(cached.get("refreshed_at", 0)) < settings.top_refresh_ms
    )
    if fresh or quote_volumes is None:
        if cached is None:
            raise ConfigError(
                f"COINPREDICT_SYMBOLS: {top} has not been resolved yet; run `coinpredict ingest`"
            )
        return list(cached["active"])
    active = rank_top(quote_volumes(top.quote), top)
    previous = set(cached.get("active", [])) | set(cached.get("inactive", [])) if cached else set()
    inactive = sorted(previous - set(active))
    atomic.write_json(
        universe_path(settings.state_dir),
        {
            "spec": str(top),
            "refreshed_at": now,
            "active": active,
            "inactive": inactive,
        },
    )
    log.info("top-N refreshed: %d active, %d inactive", len(active), len(inactive))
    return active


def series_for(
    settings: Settings, symbols: list[str], *, predictable: bool = False
) -> list[Series]:
    return [
        Series(settings.exchange, sym, tf)
        for sym in symbols
        for tf in settings.timeframes
        if not (predictable and tf.code == "1m")
    ]
