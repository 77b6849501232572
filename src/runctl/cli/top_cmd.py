"""``runctl top``: the live dashboard; ``--output json`` prints one snapshot instead."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from runctl.cli import render
from runctl.cli.observe import MetricsPortOpt, metrics_server
from runctl.cli.options import OutputOpt, finite_number
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE


def top(
    interval: Annotated[
        float, typer.Option(parser=finite_number(0.2, 3600), help="Seconds between refreshes.")
    ] = 2.0,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Live dashboard: running jobs, cost, resources, events; keys to open a log or stop a job.

    Keys: l/Enter log, s stop (asks first), r refresh, q quit. With --output json, print one
    snapshot (the same figures) and exit.
    """
    from runctl.core.errors import RunctlError, UsageError
    from runctl.workflows.dashboard import snapshot
    from runctl.workflows.local import lost_message, reconcile_local_jobs

    ledger = STATE.ledger()
    try:
        for job in reconcile_local_jobs(ledger):
            render.info(lost_message(job), job_id=job.id)
    except RunctlError as exc:  # the dashboard still shows the ledger as it is
        logging.getLogger("runctl.cli").warning("%s", exc.message, extra={"hint": exc.hint})
    if output is OutputFormat.json:
        render.print_json(snapshot(ledger).to_dict())
        return
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UsageError(
            "runctl top needs a terminal",
            hint="use 'runctl top --output json' for a snapshot, or 'runctl jobs list'",
        )
    from runctl.tui.top import TopApp

    with metrics_server(metrics_port, STATE.loaded().config, ledger):
        TopApp(ledger, interval=interval).run()
