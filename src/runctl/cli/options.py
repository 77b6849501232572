"""Option types shared by several commands, and argument parsers that give usage errors."""

from __future__ import annotations

from typing import Annotated

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
