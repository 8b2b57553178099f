"""The test and demo influxd launcher: an influxd that lost its port to another one must not
pass for up (two tests would then share one database)."""

from __future__ import annotations

import pytest

from coinpredict.base.errors import CoinpredictError
from coinpredict.replay import influxd as launcher
from coinpredict.replay.influxd import InfluxProcess, start_influxd


def test_a_port_taken_by_another_influxd_is_an_error_not_a_shared_server(influxd, tmp_path):
    with pytest.raises(CoinpredictError) as info:
        start_influxd(tmp_path / "second", influxd.port)
    assert str(info.value).startswith("influxd exited with code ")
    assert influxd.process.poll() is None  # the first one is untouched


def test_a_picked_port_that_was_taken_meanwhile_is_picked_again(
    influxd: InfluxProcess, tmp_path, monkeypatch
):
    picks = iter([influxd.port, launcher.free_port(), launcher.free_port(), launcher.free_port()])
    monkeypatch.setattr(launcher, "free_port", lambda: next(picks))
    proc = start_influxd(tmp_path / "second")
    try:
        assert proc.port != influxd.port
        assert proc.process.poll() is None
        inodes = launcher._listening_inodes(proc.port)
        assert inodes and launcher._owns_socket(proc.process.pid, inodes)
        assert not launcher._owns_socket(proc.process.pid, launcher._listening_inodes(influxd.port))
    finally:
        proc.stop()
