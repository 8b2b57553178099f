"""Prices as text (Binance's kline rows): exactly the ASCII decimal forms are numbers."""

import pytest

from coinpredict.base.candles import check_row
from coinpredict.base.timeframes import HOUR_MS, TIMEFRAMES

H1 = TIMEFRAMES["1h"]
T0 = 1_600_000_000_000 - 1_600_000_000_000 % HOUR_MS


def _close(text):
    return check_row([T0, "1.0", "100000", "0.5", text, "1"], H1, T0 + HOUR_MS)


@pytest.mark.parametrize("text", ["1_0", "1 0", "0x10", "\uff11", "1e", "--1", "١.٥", "1.0.0"])
def test_text_that_float_might_take_is_not_a_number(text):
    assert _close(text).reason == "non-numeric value"


@pytest.mark.parametrize("text", ["", "   "])
def test_blank_text_is_a_missing_value(text):
    assert _close(text).reason == "missing value"


@pytest.mark.parametrize(
    ("text", "value"),
    [("8632.97000000", 8632.97), (" 2 ", 2.0), ("+.5", 0.5), ("1E2", 100.0), ("7.", 7.0)],
)
def test_decimal_text_is_parsed_exactly(text, value):
    assert _close(text).close == value


@pytest.mark.parametrize("text", ["nan", "Infinity", "-inf"])
def test_non_finite_text(text):
    assert _close(text).reason == "non-finite value"
