"""The online calibration state file (coinpredict.forecast.online, written by predict): packed
pending forecasts (format 2) round-trip exactly, plain files of format 1 are still read, and a
packed part that does not add up means starting afresh."""

import json

import numpy as np
import pytest

from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.forecast.online import (
    PACKED_FORMAT,
    STATE_FORMAT,
    OnlineState,
    Pending,
    pack_state,
    unpack_state,
)
from coinpredict.serving.predict import calibration_path, load_calibration

BTC = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
H = 24


def _state() -> OnlineState:
    rng = np.random.default_rng(7)
    st = OnlineState.fresh("v3", H, 0.8)
    st.theta = rng.normal(0, 0.1, (H, 4)).round(6)
    st.common = np.array([0.01, -0.02, 0.0, 1e-7])
    st.scored, st.last_scored = 1234, 1_600_000_000_000
    for j in range(H):  # the forecast of j runs ago has H - j steps still open
        n = H - j
        edges = (rng.lognormal(10, 1, (n, 4)) * np.array([0.9, 1.1, 0.8, 1.2])).tolist()
        edges[0][0] = 0.1 + 0.2  # a value whose shortest text is long
        times = [1_600_000_000_000 + 3_600_000 * (k + j) for k in range(n)]
        st.pending.append(Pending(list(range(j, H)), times, edges))
    return st


def _write(settings, doc) -> None:
    path = calibration_path(settings.state_dir, BTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_a_packed_state_round_trips_exactly(settings):
    st = _state()
    doc = pack_state(st.to_json())
    assert doc["format_version"] == PACKED_FORMAT and isinstance(doc["pending"]["edges"], str)
    _write(settings, doc)
    back = load_calibration(settings.state_dir, BTC)
    assert back is not None and back.to_json() == st.to_json()
    for mine, theirs in zip(st.pending, back.pending, strict=True):
        assert np.array(mine.edges).tobytes() == np.array(theirs.edges).tobytes()


def test_an_empty_state_round_trips(settings):
    st = OnlineState.fresh("builtin", 14, 0.8)
    _write(settings, pack_state(st.to_json()))
    assert load_calibration(settings.state_dir, BTC).to_json() == st.to_json()


def test_a_plain_state_of_format_1_is_still_read(settings):
    st = _state()
    plain = st.to_json()
    assert plain["format_version"] == STATE_FORMAT == 1
    _write(settings, plain)
    assert load_calibration(settings.state_dir, BTC).to_json() == plain
    assert unpack_state(plain) is plain


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.update(lengths=[*p["lengths"][:-1], p["lengths"][-1] + 1]),
        lambda p: p.update(edges=p["edges"][:-4]),  # base64 cut short
        lambda p: p.update(steps="not base64!"),
        lambda p: p.update(timestamps=12),
        lambda p: p.pop("edges"),
        lambda p: p.update(lengths=[-1, *p["lengths"][1:]]),
    ],
)
def test_a_packed_part_that_does_not_add_up_means_starting_afresh(settings, spoil):
    doc = pack_state(_state().to_json())
    spoil(doc["pending"])
    _write(settings, doc)
    assert load_calibration(settings.state_dir, BTC) is None
