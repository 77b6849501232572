"""Presentation: rich tables on a terminal, stable JSON with ``--output json``.

Kept apart from the commands so the work (library calls) and the looks never mix. rich is
imported on first use only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

# the one money and duration formatters, re-exported for the commands (``render.usd(...)``)
from runctl.core.units import duration as duration
from runctl.core.units import usd as usd

if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


_console: Console | None = None
_err_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        # Piped output is read by tools, not wrapped to a guessed terminal width.
        _console = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
    return _console


def err_console() -> Console:
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as strict JSON: a non-finite number (``Infinity``/``NaN`` are not JSON) is refused
    here, after values were validated on the way in, rather than printed as invalid output."""
    return json.dumps(data, indent=indent, sort_keys=True, default=str, allow_nan=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json_text(data) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    grid = Table(title=title, header_style="bold", title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold", no_wrap=column in ("ID", "STATE"))
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """A two-column key/value listing."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        console().print(f"[bold]{key:<{width}}[/]  {'' if value is None else value}")


def when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def size(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    return f"{num:.1f} TiB"


def error(message: str, hint: str | None = None) -> None:
    from runctl.core import logs

    if logs.is_configured():  # the CLI: through the log handler (format, -q, redaction)
        logging.getLogger(logs.CLI_LOGGER).error(message, extra={"hint": hint})
        return
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console().print(f"[yellow]hint:[/] {escape(hint)}")


def info(message: str, **fields: Any) -> None:
    """A status line on stderr; ``fields`` (job_id, resource_id, ...) go into JSON logs."""
    from runctl.core import logs

    if logs.is_configured():
        logging.getLogger(logs.CLI_LOGGER).info(message, extra=fields)
        return
    from rich.markup import escape

    err_console().print(f"[dim]{escape(message)}[/]")
