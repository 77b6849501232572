"""Option types shared by several commands, and argument parsers that give usage errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import typer

from runctl.cli.render import OutputFormat

OverBudgetOpt = Annotated[
    bool,
    typer.Option(
        "--over-budget", help="Launch even when a [cost] budget or limit refuses it (exit 79 otherwise)."
    ),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for programs (stable keys)."),
]


def finite_number(minimum: float | None = None, maximum: float | None = None) -> Callable[[Any], float]:
    """A typer ``parser`` for a number option that must be finite (``inf``/``nan`` refused) and
    within the bounds: for every price, bid, rate and number of seconds on the command line.
    A bad value is a usage error naming the option (click's "Invalid value for ...")."""

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        if minimum is not None and number < minimum:
            raise ValueError(f"{value!r} is less than {minimum:g}")
        if maximum is not None and number > maximum:
            raise ValueError(f"{value!r} is more than {maximum:g}")
        return number

    return parse


#: USD amounts (prices): finite; the sign is checked where the value is used.
MONEY = finite_number()
#: A bid per GPU-hour: finite and not negative.
BID = finite_number(0.0)


def duration_arg(name: str, value: str | None) -> float | None:
    """Parse a duration option (``30``, ``30s``, ``5m``, ``2h``) or raise a usage error."""
    if value is None:
        return None
    from runctl.core.config import parse_duration
    from runctl.core.errors import UsageError

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}", hint=f"e.g. {name} 30s, {name} 2h") from None
