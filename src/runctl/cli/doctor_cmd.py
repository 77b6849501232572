"""``runctl doctor``: one line per check — ok, warn, fail or skip — with the fix."""

from __future__ import annotations

from typing import Annotated

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt, finite_number
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor(
    timeout: Annotated[
        float,
        typer.Option(parser=finite_number(0.1, 600), help="Seconds per network check."),
    ] = 5.0,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Check the config, state dir, ledger, AWS and RunPod credentials, storage and clock.

    Exits 0 when nothing failed (warnings allowed), 78 when the configuration is invalid,
    1 when another check failed.
    """
    from rich.markup import escape

    from runctl.core.logs import redact
    from runctl.workflows.doctor import diagnose

    report = diagnose(load=STATE.loaded, timeout=timeout)
    for check in report.checks:  # output goes to stdout, not through the log filter
        check.message = redact(check.message)
        check.fix = redact(check.fix) if check.fix else None
    if output is OutputFormat.json:
        render.print_json(report.to_dict())
        return report.exit_code
    width = max(len(c.name) for c in report.checks)
    console = render.console()
    for check in report.checks:
        style = _STYLE[check.status]
        line = f"[{style}]{check.status:<4}[/]  {check.name:<{width}}  {escape(check.message)}"
        console.print(line, soft_wrap=True)
        if check.fix and check.status in ("warn", "fail"):
            console.print(f"      {'':<{width}}  [dim]fix:[/] {escape(check.fix)}", soft_wrap=True)
    return report.exit_code
