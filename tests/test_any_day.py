"""The suite passes on any day: its wall-clock cases run at fixed instants over a week and a month.

A test that reads the real clock (``time.time``, ``SystemClock``, a replay shifted to "now") can
depend on the weekday or the day of the month it runs on, and so fail one day in five. Here every
such test runs again in a child pytest under ``faketime`` at each of the instants below: one per
weekday at different hours, the last evening of a month and the first hour of the next. The
instants lie in the coming weeks (InfluxDB keeps 1m candles for a rolling window of its own real
clock, so the faked "now" must not lie in the past) at fixed positions in the week and the month,
so a weekday or month-end dependence fails every day instead of one day in five. A fixed offset
(``faketime -f +SECONDS``) moves every process the test starts by the same amount.
"""

from __future__ import annotations

import ast
import calendar
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: Every test that reads the wall clock (test_every_wall_clock_test_is_listed keeps this true).
WALL_CLOCK_TESTS = (
    "test_cycle.py::test_one_minute_cycle_ingests_and_exports_and_records_no_predict_run",
    "test_export.py::test_a_failed_read_exports_what_it_can",
    "test_export.py::test_export_dir_not_a_directory_or_full",
    "test_export.py::test_export_writes_every_artifact",
    "test_freshness.py::test_evaluate_real_store_moves_with_the_clock",
    "test_gaps_e2e.py::test_ingest_fills_all_five_timeframes_from_one_replay_dir",
    "test_ingest_drills.py::test_two_overlapping_ingest_runs",
    "test_status.py::test_status_exit_codes_1_2_3_and_table",
    "test_status.py::test_status_json_fields_and_exit_0",
    "test_status.py::test_status_narrowing_and_job_statistics",
    "test_status.py::test_status_run_is_light",
)

#: Tests that read the wall clock but are not rerun at every instant (each takes 20-60 s, or
#: drives Debian's chromium against nginx's Date header, which faketime would not move, or
#: asserts which modules a CLI run imports, which no date changes). They
#: stay listed so that test_every_wall_clock_test_is_listed still fails on a new, unlisted one.
NOT_RERUN = (
    "test_backfill_faults.py::test_a_symbol_delisted_since_the_markets_were_cached_fails_that_series_only",
    "test_backfill_faults.py::test_an_unknown_symbol_fails_that_series_only",
    "test_backfill_faults.py::test_twenty_percent_faults_of_every_kind_exit_0_and_store_exactly",
    "test_cycle.py::test_one_minute_cycle_from_the_cli_imports_no_frame_or_model_library",
    "test_export_failures.py::test_a_query_error_for_one_series_exports_the_others",
    "test_export_failures.py::test_cycle_with_a_refused_database_exports_the_rest",
    "test_export_failures.py::test_export_with_a_refused_database_publishes_the_rest",
    "test_files_hardening.py::test_leftover_temp_files_are_swept_by_the_next_export",
    "test_files_hardening.py::test_modes_honour_the_umask",
    "test_secrets.py::test_userinfo_logs_in_and_no_secret_leaves_the_process",
) + tuple(
    f"test_web.py::{name}"
    for name in (
        "test_a_file_that_says_fresh_but_is_past_its_hard_limit_is_blocked",
        "test_a_truncated_or_missing_file_is_a_visible_error_for_that_series",
        "test_an_old_manifest_is_flagged",
        "test_banner_says_the_health_in_a_word",
        "test_blocked_series_show_a_red_reason_no_fan_but_candles",
        "test_data_and_prediction_freshness_are_shown_apart",
        "test_degraded_is_a_separate_badge",
        "test_every_series_has_a_chip_with_its_state_in_words",
        "test_fifty_series_interactive_and_timed",
        "test_fresh_series_draws_candles_fan_centre_marker_legend_and_steps",
        "test_keyboard_moves_between_series",
        "test_manifest_is_polled_with_etag_and_series_refetched_only_when_changed",
        "test_ops_view",
        "test_stale_series_shows_an_amber_warning_with_the_files_text_and_its_fan",
    )
)

#: (label, weekday 0=Monday or a month position, hour, minute)
WEEK = [
    ("Mon 00:07", 0, 0, 7),
    ("Tue 05:31", 1, 5, 31),
    ("Wed 11:43", 2, 11, 43),
    ("Thu 14:19", 3, 14, 19),
    ("Fri 18:26", 4, 18, 26),
    ("Sat 23:37", 5, 23, 37),
    ("Sun 09:12", 6, 9, 12),
]
MONTH = [("month's last day 23:41", "last", 23, 41), ("month's first day 00:19", "first", 0, 19)]
LABELS = [w[0] for w in WEEK] + [m[0] for m in MONTH]


def instant(label: str, now: datetime) -> datetime:
    """The instant ``label`` names, in the coming weeks: the week starts on the Monday at least
    two days ahead, the month is the one after that week."""
    monday = (now + timedelta(days=2 + (7 - (now + timedelta(days=2)).weekday()) % 7)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    for name, day, hour, minute in WEEK:
        if name == label:
            return monday + timedelta(days=day, hours=hour, minutes=minute)
    later = monday + timedelta(days=8)
    year, month = (later.year, later.month)
    name, pos, hour, minute = next(m for m in MONTH if m[0] == label)
    last = calendar.monthrange(year, month)[1]
    first_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    day = datetime(year, month, last, tzinfo=UTC) if pos == "last" else first_next
    return day.replace(hour=hour, minute=minute)


def test_the_instants_cover_every_weekday_and_a_month_end():
    for now in (datetime(2026, 12, 2, 20, 0, tzinfo=UTC), datetime(2027, 2, 26, 3, 0, tzinfo=UTC)):
        at = [instant(label, now) for label in LABELS]
        assert sorted(t.weekday() for t in at[:7]) == list(range(7))
        assert all(t > now + timedelta(days=1) for t in at)
        end, first = at[7], at[8]
        assert (end + timedelta(days=1)).day == 1 and first.day == 1
        assert first - end == timedelta(minutes=38)


def _faked(offset_s: int) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COINPREDICT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "faketime_site"), str(ROOT)])
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    return ["faketime", "-f", f"+{offset_s}"], env


@pytest.mark.parametrize("label", LABELS)
def test_wall_clock_cases_pass_at(label, tmp_path):
    now = datetime.now(UTC)
    target = instant(label, now)
    prefix, env = _faked(int((target - now).total_seconds()))
    seen = subprocess.run(
        [*prefix, sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert abs(float(seen.stdout) - target.timestamp()) < 60, seen  # the clock is really moved
    out = subprocess.run(
        [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
        + ["--basetemp", str(tmp_path / "t"), *(str(TESTS / t) for t in WALL_CLOCK_TESTS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert out.returncode == 0, f"at {target:%a %Y-%m-%d %H:%M} UTC:\n{out.stdout[-6000:]}"
    assert f"{len(WALL_CLOCK_TESTS)} passed" in out.stdout


# --- which tests read the wall clock ------------------------------------------------------------
_CLOCK_CALLS = {("time", "time"), ("time", "time_ns"), ("datetime", "now"), ("date", "today")}


def _reads_clock(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "SystemClock":
            return True
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if (f.value.id, f.attr) in _CLOCK_CALLS:
                return True
        kw = {k.arg: k.value for k in node.keywords}
        shifted = isinstance(kw.get("shift_to_now"), ast.Constant) and kw["shift_to_now"].value
        if shifted and not {"clock", "now_ms"} & set(kw):  # a replay shifted to the real "now"
            return True
    return False


def wall_clock_tests(path: Path) -> list[str]:
    """Tests of a module that read the wall clock, themselves or through a module function."""
    tree = ast.parse(path.read_text())
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    marked = {name for name, fn in fns.items() if _reads_clock(fn)}
    grew = True
    while grew:
        grew = False
        for name, fn in fns.items():
            used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
            if name not in marked and used & marked:
                marked.add(name)
                grew = True
    return sorted(f"{path.name}::{n}" for n in marked if n.startswith("test_"))


def test_every_wall_clock_test_is_listed():
    found = [t for p in sorted(TESTS.glob("test_*.py")) for t in wall_clock_tests(p)]
    found = [t for t in found if not t.startswith(Path(__file__).name)]
    assert sorted(found) == sorted(WALL_CLOCK_TESTS + NOT_RERUN)
    assert time.time() > 0  # this module reads the clock only to pick the instants
