"""The one money formatter and the one duration formatter (runctl.core.units)."""

from __future__ import annotations

import pytest

from runctl.core.units import duration, usd


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (None, ""),
        (0.0, "$0.0000"),
        (0.0104, "$0.0104"),
        (0.5, "$0.5000"),
        (1.0, "$1.00"),
        (12.345, "$12.35"),
        (1204.0, "$1,204.00"),
        (-0.25, "-$0.2500"),
        (-3.5, "-$3.50"),
    ],
)
def test_amounts_show_cents_from_a_dollar_and_four_decimals_below(amount: float | None, shown: str) -> None:
    assert usd(amount) == shown


@pytest.mark.parametrize(
    ("rate", "shown"),
    [(1.006, "$1.006/h"), (0.0104, "$0.0104/h"), (0.69, "$0.69/h"), (2.0, "$2.00/h"), (1234.5, "$1,234.50/h"),
     (None, "")],
)
def test_rates_keep_catalogue_precision(rate: float | None, shown: str) -> None:
    assert usd(rate, per_hour=True) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0, "0s"), (59.9, "59s"), (60, "1m"), (123, "2m03s"), (3600, "1h"), (3605, "1h00m05s"),
     (5400, "1h30m"), (3723, "1h02m03s"), (36000, "10h"), (90061, "25h01m01s")],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_the_cli_and_the_dashboard_use_the_same_formatters() -> None:
    from runctl.cli import render

    assert render.usd is usd and render.duration is duration
