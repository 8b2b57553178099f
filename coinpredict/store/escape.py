"""Escaping for InfluxQL and line protocol. No query or line is built from a raw value."""

from __future__ import annotations

import math

from coinpredict.base.series import Series

_TAG_TRANSLATION = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"refusing a string literal with a line break: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tag(value: str) -> str:
    """A line-protocol tag key or value."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"refusing a tag with a line break: {value!r}")
    return value.translate(_TAG_TRANSLATION)


def field_float(value: float) -> str:
    """A line-protocol float field: always a float, shortest round-trip form."""
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"refusing a non-finite field value: {value!r}")
    text = repr(f)
    return text if ("." in text or "e" in text or "inf" in text) else text + ".0"


def field_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def where_tags(tags: dict[str, str]) -> str:
    return " AND ".join(f"{ident(k)} = {literal(v)}" for k, v in tags.items())


def series_tags(series: Series, role: str | None = None) -> dict[str, str]:
    """The tags that name a series (and a forecast role) in every measurement."""
    tags = {
        "exchange": series.exchange,
        "symbol": series.symbol,
        "timeframe": series.timeframe.code,
    }
    if role is not None:
        tags["role"] = role
    return tags
