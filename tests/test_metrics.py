"""The Prometheus textfile, validated by a small strict text-format parser."""

from __future__ import annotations

import math
import re

from helpers import world as hx
from helpers.world import T0, H, World

from coinpredict.base.clock import FixedClock
from coinpredict.base.config import DEFAULT_POLICIES
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.health.freshness import Evaluation, SeriesFacts, evaluate_series
from coinpredict.health.metrics import escape_label, render, write_textfile
from coinpredict.local.runs import recorded_run, runs_path
from coinpredict.local.state import PredictState

world = hx.world  # fixture

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_strict(text: str) -> dict[str, dict]:
    """Families -> {help, type, samples: {(name, labels): value}}; raises on any violation."""
    assert text.endswith("\n"), "must end with a newline"
    families: dict[str, dict] = {}
    current = None
    finished: set[str] = set()
    for line in text[:-1].split("\n"):
        assert line, "no blank lines"
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, arg = rest.partition(" ")
            assert _NAME.fullmatch(name), f"bad metric name {name!r}"
            assert name not in finished, f"{name} appears twice"
            fam = families.setdefault(name, {"help": None, "type": None, "samples": {}})
            assert not fam["samples"], f"{kind} of {name} after its samples"
            if current is not None and current != name:
                finished.add(current)
            current = name
            if kind == "HELP":
                assert fam["help"] is None and arg, f"HELP of {name}"
                fam["help"] = arg
            else:
                assert fam["type"] is None and arg in _TYPES, f"TYPE of {name}"
                fam["type"] = arg
            continue
        assert not line.startswith("#"), f"stray comment {line!r}"
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$", line)
        assert m, f"bad sample line {line!r}"
        name, raw_labels, value = m.group(1), m.group(2), m.group(3)
        assert name == current, f"sample {name} outside its family"
        labels = ()
        if raw_labels:
            body = raw_labels[1:-1]
            pairs = []
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, f"bad labels {raw_labels!r}"
                pairs.append((lm.group(1), lm.group(2)))
                pos = lm.end()
                if pos < len(body):
                    assert body[pos] == ",", f"bad labels {raw_labels!r}"
                    pos += 1
            names = [k for k, _ in pairs]
            assert len(names) == len(set(names)), "duplicate label name"
            labels = tuple(pairs)
        number = float(value) if value not in ("NaN", "+Inf", "-Inf") else float(value[-3:])
        fam = families[name]
        assert fam["type"] is not None, f"{name} has no TYPE"
        assert (name, labels) not in fam["samples"], f"duplicate sample {line!r}"
        fam["samples"][(name, labels)] = number
    for name, fam in families.items():
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
            assert all(v >= 0 for v in fam["samples"].values())
        assert name.startswith("coinpredict_")
    return families


def _value(fams, name, **labels) -> float:
    want = tuple(sorted(labels.items()))
    for (_, got), v in fams[name]["samples"].items():
        if tuple(sorted(got)) == want:
            return v
    raise KeyError((name, labels))


def test_render_is_valid_and_escapes_labels():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    tf = TIMEFRAMES["1h"]
    s = Series('odd"ex\\change\n', "BTC/USDT", tf)
    last = tf.last_closed_open(T0)
    facts = SeriesFacts(
        s,
        latest=(last, 10.0, 12.0, 9.0, 11.0, 1.0),
        predict_state=PredictState(status="failed"),
    )
    ev = Evaluation(T0, [evaluate_series(facts, DEFAULT_POLICIES["1h"], T0 + 2 * H)])
    records = {
        "ingest": [
            {"start": 1000, "end": 3000, "duration_s": 2.0, "outcome": "ok", "overrun": False},
            {"start": 5000, "end": 9000, "duration_s": 4.0, "outcome": "failed", "overrun": True},
        ]
    }
    totals = {"ingest": {"ok": 1, "partial": 0, "failed": 1}}
    fams = parse_strict(render(ev, records, totals, T0))
    assert _value(fams, "coinpredict_job_last_success_timestamp_seconds", job="ingest") == 3.0
    assert _value(fams, "coinpredict_job_last_run_timestamp_seconds", job="ingest") == 9.0
    assert _value(fams, "coinpredict_job_runs_total", job="ingest", outcome="failed") == 1
    assert _value(fams, "coinpredict_job_last_outcome", job="ingest", outcome="failed") == 1
    assert _value(fams, "coinpredict_job_overrun_ratio", job="ingest") == 0.5
    base = {"exchange": 'odd\\"ex\\\\change\\n', "symbol": "BTC/USDT", "timeframe": "1h"}
    fresh = fams["coinpredict_series_freshness"]["samples"]
    hot = [dict(lab) for (_, lab), v in fresh.items() if v == 1]
    assert {(h["kind"], h["state"]) for h in hot} == {
        ("data", "stale"),
        ("prediction", "hard_stale"),
    }
    assert all(h["exchange"] == base["exchange"] for h in hot)
    assert _value(fams, "coinpredict_series_degraded", **base) == 1
    age = _value(fams, "coinpredict_series_age_seconds", kind="data", **base)
    assert math.isclose(age, (T0 + 2 * H - tf.close_time(last)) / 1000)
    assert _value(fams, "coinpredict_health_status") == 2
    for fam in fams.values():
        assert fam["help"] and fam["type"] in ("gauge", "counter")


def _run(world: World, clock: FixedClock, job: str, ok: bool) -> None:
    try:
        with recorded_run(world.settings.state_dir, job, clock, locks=[], wait_ms=0):
            clock.advance(1500)
            if not ok:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    clock.advance(60_000)


def test_last_success_moves_only_after_success_and_counters_never_go_back(world: World):
    world.up_to_date(world.series(), T0)
    clock = FixedClock(T0)
    _run(world, clock, "ingest", ok=True)
    path = write_textfile(world.settings, clock)  # evaluates by itself: series gauges present
    assert path == world.settings.effective_metrics_dir / "coinpredict.prom"
    fams = parse_strict(path.read_text())
    first = _value(fams, "coinpredict_job_last_success_timestamp_seconds", job="ingest")
    assert first == (T0 + 1500) / 1000
    assert _value(fams, "coinpredict_influxdb_up") == 1
    assert "coinpredict_series_freshness" in fams
    _run(world, clock, "ingest", ok=False)
    fams = parse_strict(write_textfile(world.settings, clock, evaluate=False).read_text())
    assert _value(fams, "coinpredict_job_last_success_timestamp_seconds", job="ingest") == first
    assert _value(fams, "coinpredict_job_runs_total", job="ingest", outcome="failed") == 1
    assert "coinpredict_series_freshness" not in fams
    # the bounded history drops old records: the counters must not go back
    runs_path(world.settings.state_dir, "ingest").write_text("")
    _run(world, clock, "ingest", ok=True)
    fams = parse_strict(write_textfile(world.settings, clock, evaluate=False).read_text())
    assert _value(fams, "coinpredict_job_runs_total", job="ingest", outcome="ok") == 2
    assert _value(fams, "coinpredict_job_runs_total", job="ingest", outcome="failed") == 1
    assert _value(fams, "coinpredict_job_last_success_timestamp_seconds", job="ingest") > first


def test_unwritable_metrics_dir_never_fails_the_job(world: World, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = world.reload(COINPREDICT_METRICS_DIR=str(blocker))
    assert write_textfile(settings, FixedClock(T0), evaluate=False) is None


def test_export_refreshes_the_textfile_with_its_own_run_and_reads_histories_once(
    world: World, monkeypatch
):
    """The textfile written after an export counts that export, and the run histories behind
    status.json and the textfile are read from disk once."""
    from coinpredict.health import status
    from coinpredict.jobs.runner import run_export_job

    world.up_to_date(world.series(), T0)
    reads = []
    real = status.history
    monkeypatch.setattr(status, "history", lambda d, job: reads.append(job) or real(d, job))
    for n in (1, 2):
        result = run_export_job(world.settings, FixedClock(T0 + n * 60_000))
        assert result.exit_code == 0
        path = world.settings.effective_metrics_dir / "coinpredict.prom"
        fams = parse_strict(path.read_text())
        assert _value(fams, "coinpredict_job_runs_total", job="export", outcome="ok") == n
    assert sorted(reads) == sorted(status.JOBS * 2)
