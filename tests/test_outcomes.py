"""Per-job details: the keys they put in a series' JSON and table, and what counts as skipped."""

from __future__ import annotations

from coinpredict.base.outcomes import Report, SeriesOutcome
from coinpredict.base.series import Series
from coinpredict.base.timeframes import TIMEFRAMES
from coinpredict.cli.data_cmds import render_report
from coinpredict.ingest.outcomes import GapsDetail, IngestDetail
from coinpredict.serving.outcomes import PredictDetail, TrainDetail, TrainedModel

BTC = Series("binance", "BTC/USDT", TIMEFRAMES["1h"])
ETH = Series("binance", "ETH/USDT", TIMEFRAMES["1h"])


def test_always_there_keys_stay_when_none_and_optional_ones_only_when_set() -> None:
    outcome = SeriesOutcome(BTC, IngestDetail(stored=3, pages=1))
    outcome.fail("InfluxDB is down")
    assert outcome.as_dict() == {
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "ok": False,
        "error": "InfluxDB is down",
        "stored": 3,
        "pages": 1,
        "rejected": 0,
        "cursor": None,
    }
    noted = IngestDetail(note="the exchange has no candles for this series", cursor=7)
    assert list(noted.as_dict()) == ["stored", "pages", "rejected", "note", "cursor"]
    assert GapsDetail().as_dict() == {}  # the series failed before it was checked


def test_a_nested_detail_adds_its_fields_in_place_none_included() -> None:
    detail = TrainDetail(pruned="v1", trained=TrainedModel("v2", None, None, 0), promoted="yes")
    assert list(detail.as_dict().items()) == [
        ("pruned", "v1"),
        ("version", "v2"),
        ("relative_mae", None),
        ("coverage", None),
        ("samples", 0),
        ("promoted", "yes"),
    ]
    assert TrainDetail(skipped="insufficient history").as_dict() == {
        "skipped": "insufficient history"
    }


def test_a_remark_is_in_the_json_but_in_the_tables_detail_column(capsys) -> None:
    report: Report[IngestDetail] = Report("ingest")
    report.outcomes = [
        SeriesOutcome(BTC, IngestDetail(note="no candles at the exchange")),
        SeriesOutcome(ETH, IngestDetail(stored=2, skipped="not trading (status BREAK)")),
    ]
    assert report.as_dict()["series"][0]["note"] == "no candles at the exchange"
    assert report.outcomes[1].detail.columns() == {
        "stored": 2,
        "pages": 0,
        "rejected": 0,
        "skipped": "not trading (status BREAK)",
        "cursor": None,
    }
    render_report(report)
    header = next(line for line in capsys.readouterr().out.splitlines() if "symbol" in line)
    cells = [c.strip() for c in header.strip("┃│ ").replace("┃", "│").split("│")]
    assert cells == [
        "symbol",
        "tf",
        "outcome",
        "stored",
        "pages",
        "rejected",
        "cursor",
        "skipped",
        "detail",
    ]


def test_skipped_series_are_counted_in_the_run_record() -> None:
    predict: Report[PredictDetail] = Report("predict")
    predict.outcomes = [
        SeriesOutcome(BTC, PredictDetail(skipped=True)),
        SeriesOutcome(ETH, PredictDetail(version="v1")),
    ]
    assert predict.summary().extra == {"skipped": 1}
    ingest: Report[IngestDetail] = Report("ingest")
    ingest.outcomes = [SeriesOutcome(BTC, IngestDetail(skipped="not trading (status HALT)"))]
    assert ingest.summary().extra == {"skipped": 1}
    train: Report[TrainDetail] = Report("train")
    train.outcomes = [SeriesOutcome(BTC, TrainDetail(promoted="yes"))]
    assert train.summary().extra == {}
