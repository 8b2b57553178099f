"""Model artifacts and the per-series registry: save/load, corruption, gate, promote, rollback,
prune, and a crash in the middle of training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers.samples import load

from coinpredict.base.clock import FixedClock
from coinpredict.base.errors import ArtifactError, CoinpredictError, UnsafeSymbolError
from coinpredict.forecast import artifact, registry
from coinpredict.forecast.artifact import load_model, save_model
from coinpredict.forecast.models import NaiveForecaster, RidgeForecaster
from coinpredict.forecast.registry import BUILTIN, Gate, Registry
from coinpredict.forecast.types import PromotionRefused

SYM = "BTC/USDT"
CLOCK = FixedClock(1_700_000_000_000)
GOOD = {
    "samples": 1000,
    "relative_mae": 0.99,
    "relative_pinball": 0.97,
    "coverage": 0.80,
    "coverage_95": 0.95,
    "relative_width": 0.95,
    "relative_interval_score": 0.98,
    "naive_coverage": 0.84,
}


@pytest.fixture(scope="module")
def daily() -> pl.DataFrame:
    return load("BTC_USDT-1d")


@pytest.fixture(scope="module")
def ridge(daily: pl.DataFrame) -> RidgeForecaster:
    return RidgeForecaster("1d", 14).fit(daily)


def naive(daily: pl.DataFrame) -> NaiveForecaster:
    return NaiveForecaster("1d", 14).fit(daily)


# --- artifacts -----------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path, ridge: RidgeForecaster, daily: pl.DataFrame) -> None:
    side = save_model(
        ridge, tmp_path / "v1", version="v1", trained_at_ms=CLOCK.ms, metrics={"relative_mae": 1.0}
    )
    meta = json.loads(side.read_text())
    assert meta["name"] == "ridge" and meta["version"] == "v1"
    assert meta["trained_at"] == "2023-11-14T22:13:20Z"
    assert meta["training_span"]["last"] == "2022-09-30T00:00:00Z"
    assert meta["features"][:2] == ["ret1", "ret3"]
    assert {"python", "numpy", "joblib", "polars"} <= set(meta["libraries"])
    assert meta["format_version"] == artifact.FORMAT_VERSION
    back = load_model(tmp_path / "v1")
    assert isinstance(back, RidgeForecaster) and back.version == "v1"
    assert back.predict(daily).close == ridge.predict(daily).close
    assert back.predict(daily).upper == ridge.predict(daily).upper
    assert not [p.name for p in (tmp_path / "v1").iterdir() if p.name.startswith(".")]


def test_corrupt_artifact_is_refused(tmp_path: Path, ridge: RidgeForecaster) -> None:
    save_model(ridge, tmp_path)
    art = tmp_path / "model.joblib"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as exc:
        load_model(tmp_path)
    assert str(exc.value) == f"{art}: corrupt model artifact (checksum mismatch)"


def test_unpicklable_artifact_with_matching_checksum(
    tmp_path: Path, ridge: RidgeForecaster
) -> None:
    import hashlib

    save_model(ridge, tmp_path)
    art = tmp_path / "model.joblib"
    art.write_bytes(b"not a pickle at all")
    side = tmp_path / "model.json"
    meta = json.loads(side.read_text())
    meta["artifact"]["sha256"] = hashlib.sha256(b"not a pickle at all").hexdigest()
    side.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"model\.joblib: corrupt model artifact \("):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m.update(format_version=99),
            "incompatible model format version 99 (this coinpredict reads 1); retrain the model",
        ),
        (
            lambda m: m["libraries"].update(numpy="1.26.4"),
            "incompatible model: trained with numpy 1.26.4",
        ),
        (lambda m: m.update(name="prophet"), "unknown model name 'prophet'"),
        (lambda m: m.pop("artifact"), "sidecar lacks the artifact checksum"),
    ],
)
def test_incompatible_sidecar_is_refused(
    tmp_path: Path, ridge: RidgeForecaster, edit: Any, message: str
) -> None:
    save_model(ridge, tmp_path)
    side = tmp_path / "model.json"
    meta = json.loads(side.read_text())
    edit(meta)
    side.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as exc:
        load_model(tmp_path)
    assert str(exc.value).startswith(f"{side}: ")
    assert message in str(exc.value)


def test_missing_pieces(tmp_path: Path, ridge: RidgeForecaster) -> None:
    with pytest.raises(ArtifactError, match="model metadata is missing"):
        load_model(tmp_path)
    save_model(ridge, tmp_path)
    (tmp_path / "model.joblib").unlink()
    with pytest.raises(ArtifactError, match="model artifact is missing"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text("{broken")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_model(tmp_path)


# --- registry --------------------------------------------------------------------------------
def test_builtin_naive_is_the_default_champion(tmp_path: Path, daily: pl.DataFrame) -> None:
    ref = registry.champion(tmp_path, SYM, "1d")
    assert ref.version == BUILTIN and ref.is_builtin and ref.name == "naive"
    assert registry.shadow(tmp_path, SYM, "1d") is None
    fc = registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14)
    fc.check()
    assert (fc.model_name, fc.model_version) == ("naive", BUILTIN)
    assert not (tmp_path / "BTC_USDT_1d").exists()  # reading creates nothing


def test_train_series_registers_a_shadow(tmp_path: Path, daily: pl.DataFrame) -> None:
    res = registry.train_series(tmp_path, SYM, "1d", daily, 14, origins=12, clock=CLOCK)
    assert res.version == "v1" and res.path == tmp_path / "BTC_USDT_1d" / "v1"
    assert {"relative_mae", "coverage", "coverage_95", "samples", "mase"} <= set(res.metrics)
    assert sorted(p.name for p in res.path.iterdir()) == [
        "backtest.json",
        "model.joblib",
        "model.json",
    ]
    assert registry.champion(tmp_path, SYM, "1d").version == BUILTIN  # never changes the champion
    assert registry.shadow(tmp_path, SYM, "1d").version == "v1"
    fc = registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14, role="shadow")
    assert (fc.model_name, fc.model_version) == ("ridge", "v1")
    hist = registry.history(tmp_path, SYM, "1d")
    assert hist[-1]["action"] == "register_shadow" and hist[-1]["by"] == "train"
    assert hist[-1]["at"] == "2023-11-14T22:13:20Z"
    rows = registry.list_versions(tmp_path, SYM, "1d")
    assert [(r["version"], r["role"]) for r in rows] == [(BUILTIN, "champion"), ("v1", "shadow")]


def test_gate_refuses_a_model_worse_than_naive(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(naive(daily), metrics={**GOOD, "relative_mae": 1.031}, clock=CLOCK)
    before = reg.champion()
    with pytest.raises(PromotionRefused) as exc:
        reg.promote(by="test")
    assert exc.value.condition == "naive"
    assert str(exc.value) == (
        "promotion refused: shadow v1 is worse than naive last-close: relative MAE 1.031 > 1.00"
    )
    assert reg.champion() == before and reg.shadow().version == "v1"
    assert reg.state().history[-1]["action"] == "promote_refused"


@pytest.mark.parametrize(
    ("metrics", "gate", "condition", "text"),
    [
        ({**GOOD, "samples": 50}, Gate(), "samples", "scored on 50 samples"),
        (
            {**GOOD, "relative_pinball": 0.995},
            Gate(margin=0.01),
            "champion",
            "by the margin 1.00%: relative pinball loss 0.9950 vs 1.0000",
        ),
        (
            {**GOOD, "relative_mae": 1.0},
            Gate(margin=0.005, compare_on="relative_mae"),
            "champion",
            "by the margin 0.50%: relative MAE 1.0000 vs 1.0000",
        ),
        ({**GOOD, "relative_pinball": None}, Gate(), "champion", "(no relative_pinball)"),
        ({**GOOD, "coverage": 0.70}, Gate(), "coverage", "interval coverage 0.7 is not within"),
        ({**GOOD, "coverage_95": 0.85}, Gate(), "coverage_95", "95% interval coverage 0.85"),
        (
            {**GOOD, "relative_interval_score": 1.01},
            Gate(),
            "width",
            "interval score 1.0100x naive's empirical band",
        ),
        (
            {**GOOD, "relative_width": 1.1, "coverage": 0.85, "naive_coverage": 0.83},
            Gate(),
            "width",
            "1.100x as wide as naive's empirical band without covering closer to 0.80",
        ),
        (
            {k: v for k, v in GOOD.items() if k != "relative_width"},
            Gate(),
            "width",
            "no relative width",
        ),
    ],
)
def test_gate_names_the_failed_condition(
    tmp_path: Path, daily: pl.DataFrame, metrics: dict, gate: Gate, condition: str, text: str
) -> None:
    registry.register_shadow(tmp_path, SYM, "1d", naive(daily), metrics=metrics)
    with pytest.raises(PromotionRefused) as exc:
        registry.promote(tmp_path, SYM, "1d", gate=gate)
    assert exc.value.condition == condition
    assert text in str(exc.value)


def test_gate_lets_a_wider_band_through_only_when_it_covers_closer(
    tmp_path: Path, daily: pl.DataFrame
) -> None:
    """Wider than naive's band is allowed when naive under- or over-covers and the shadow is
    closer to the nominal level; the same width with naive closer is refused."""
    wide = {**GOOD, "relative_width": 1.2, "coverage": 0.79}
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(naive(daily), metrics={**wide, "naive_coverage": 0.72})
    reg.promote()
    assert reg.champion().version == "v1"
    reg.register_shadow(
        naive(daily), metrics={**wide, "relative_pinball": 0.9, "naive_coverage": 0.80}
    )
    with pytest.raises(PromotionRefused) as exc:
        reg.promote()
    assert exc.value.condition == "width"


def test_promote_without_shadow(tmp_path: Path) -> None:
    with pytest.raises(PromotionRefused, match="has no shadow model") as exc:
        registry.promote(tmp_path, SYM, "1d")
    assert exc.value.condition == "shadow"


def test_promote_and_rollback(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    v1 = reg.register_shadow(naive(daily), metrics=GOOD)
    reg.promote(by="alice")
    assert reg.champion().version == v1 and reg.shadow() is None
    fc = registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14)
    assert fc.model_version == "v1"
    # v2 must beat v1 by the margin: pinball 0.97 * (1 - 0.005) = 0.96515
    v2 = reg.register_shadow(naive(daily), metrics={**GOOD, "relative_pinball": 0.965})
    with pytest.raises(PromotionRefused):
        reg.promote(gate=Gate(margin=0.01))
    reg.promote(gate=Gate(margin=0.005))
    st = reg.state()
    assert (st.champion, st.previous) == (v2, [BUILTIN, v1])
    assert reg.rollback(by="bob") == v1
    assert reg.champion().version == v1
    assert registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14).model_version == "v1"
    assert reg.rollback() == BUILTIN
    with pytest.raises(CoinpredictError, match="no previous champion"):
        reg.rollback()
    actions = [h["action"] for h in reg.state().history]
    assert actions == [
        "register_shadow",
        "promote",
        "register_shadow",
        "promote_refused",
        "promote",
        "rollback",
        "rollback",
    ]
    assert reg.state().history[5]["by"] == "bob"


def test_promote_on_a_fresh_backtest(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(naive(daily), metrics={"samples": 0})  # recorded metrics are ignored
    report = reg.promote(
        frame=daily,
        horizon=7,
        origins=30,
        gate=Gate(coverage_tolerance=1.0, coverage95_tolerance=1.0),
    )
    assert report["source"] == "backtest" and report["shadow"]["relative_mae"] == 1.0
    assert report["shadow"]["samples"] == 30 * 7
    assert reg.champion().version == "v1"


def test_forecast_horizon_longer_than_trained(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(NaiveForecaster("1d", 5).fit(daily), metrics=GOOD)
    reg.promote()
    with pytest.raises(CoinpredictError, match="trained for horizon 5, 14 was asked"):
        registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14)


def test_prune_keeps_champion_predecessor_and_shadow(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    m = naive(daily)
    for k in range(1, 6):
        reg.register_shadow(m, metrics={**GOOD, "relative_mae": 1.0 - k / 100})
        if k in (1, 2, 4):
            reg.promote()
    st = reg.state()
    assert (st.champion, st.previous, st.shadow) == ("v4", [BUILTIN, "v1", "v2"], "v5")
    orphan = reg.dir / "v9"
    orphan.mkdir()
    (orphan / "model.joblib").write_bytes(b"half")
    removed = reg.prune(keep=1)
    assert removed == ["v1", "v3", "v9"]
    st = reg.state()
    assert sorted(st.versions) == ["v2", "v4", "v5"]
    assert st.previous == [BUILTIN, "v2"]
    assert sorted(p.name for p in reg.dir.iterdir() if p.is_dir()) == ["v2", "v4", "v5"]
    assert reg.rollback() == "v2"
    # keep=0: only the protected ones stay (champion v2, its predecessor builtin, shadow v5).
    assert reg.prune(keep=0) == ["v4"]
    assert sorted(reg.state().versions) == ["v2", "v5"]
    assert registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14).model_version == "v2"


def test_crash_mid_train_leaves_registry_untouched(
    tmp_path: Path, daily: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(naive(daily), metrics=GOOD)
    reg.promote()
    before = reg.path.read_bytes()

    real_save = artifact.save_model

    def crashing_save(model: Any, directory: Path, **kw: Any) -> Path:
        (Path(directory) / "model.joblib").write_bytes(b"partial")  # half-written version
        raise RuntimeError("power cut")

    monkeypatch.setattr(artifact, "save_model", crashing_save)
    with pytest.raises(RuntimeError, match="power cut"):
        registry.train_series(tmp_path, SYM, "1d", daily, 14, origins=5)
    assert reg.path.read_bytes() == before
    assert (reg.dir / "v2").is_dir()  # the debris is there ...
    assert reg.champion().version == "v1"  # ... and ignored
    assert [r["version"] for r in reg.versions()] == [BUILTIN, "v1"]
    assert registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14).model_version == "v1"

    monkeypatch.setattr(artifact, "save_model", real_save)
    res = registry.train_series(tmp_path, SYM, "1d", daily, 14, origins=5)
    assert res.version == "v3"  # never reuses the debris' number
    assert reg.shadow().version == "v3" and reg.champion().version == "v1"


def test_broken_registry_and_unregistered_versions(tmp_path: Path) -> None:
    reg = Registry(tmp_path, SYM, "1h")
    reg.dir.mkdir(parents=True)
    (reg.dir / "v1").mkdir()  # an unfinished save, nothing registered
    assert reg.champion().version == BUILTIN
    reg.path.write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        reg.champion()


def test_broken_champion_artifact_is_an_artifact_error(tmp_path: Path, daily: pl.DataFrame) -> None:
    reg = Registry(tmp_path, SYM, "1d")
    reg.register_shadow(naive(daily), metrics=GOOD)
    reg.promote()
    (reg.dir / "v1" / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.forecast_for_series(tmp_path, SYM, "1d", daily, 14)


def test_unsafe_symbol_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeSymbolError):
        registry.champion(tmp_path, "../../etc/X", "1d")


def test_train_monthly_is_too_short_and_changes_nothing(tmp_path: Path) -> None:
    from coinpredict.forecast.types import InsufficientHistoryError

    monthly = load("BTC_USDT-1M")
    with pytest.raises(InsufficientHistoryError, match="62 candles, need at least 73"):
        registry.train_series(tmp_path, SYM, "1M", monthly, 6)
    assert not (tmp_path / "BTC_USDT_1M").exists()
    fc = registry.forecast_for_series(tmp_path, SYM, "1M", monthly, 6)
    assert fc.model_version == BUILTIN and fc.timestamps[0] == 1_664_582_400_000  # 2022-10-01


def test_compare_champion_and_shadow(tmp_path: Path, daily: pl.DataFrame) -> None:
    with pytest.raises(CoinpredictError, match="no shadow model to compare"):
        registry.compare(tmp_path, SYM, "1d", daily, 7)
    registry.train_series(tmp_path, SYM, "1d", daily, 14, origins=5)
    report = registry.compare(tmp_path, SYM, "1d", daily, 7, origins=10)
    assert report["horizon"] == 7 and report["n_origins"] == 10
    assert report["champion"]["relative_mae"] == 1.0  # builtin naive
    assert {"coverage", "relative_mae", "width_pct"} <= set(report["shadow"])
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[]", "not a registry this coinpredict can read"),
        ('{"format_version": 1, "champion": "builtin"}', "registry lacks 'previous'"),
        (
            '{"format_version": 1, "champion": "v1", "previous": [], "history": [],'
            ' "versions": {"v1": {"horizon": "fourteen"}}}',
            "malformed registry",
        ),
        (
            '{"format_version": 1, "champion": "v1", "previous": [], "history": [],'
            ' "versions": ["v1"]}',
            "malformed registry",
        ),
    ],
)
def test_foreign_registry_files_are_refused_by_name(tmp_path: Path, content: str, why: str):
    reg = Registry(tmp_path, SYM, "1d")
    reg.dir.mkdir(parents=True)
    reg.path.write_text(content)
    with pytest.raises(ArtifactError, match=why) as err:
        reg.champion()
    assert str(reg.path) in str(err.value)
