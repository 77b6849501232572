"""The ``--metrics-port`` option that long-running commands share, and the server behind it.

A port given on the command line must be free (else a usage-level error before anything
starts); a port that only comes from ``[monitoring] metrics_port`` is best effort: when it is
taken (say, by a second ``runctl local``) the command warns and runs without serving, because
metrics must never stop a training job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from runctl.core.config import Config
    from runctl.core.ledger import Ledger

MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus /metrics on this port while the command runs (0: a free port; "
        "default: the config's monitoring.metrics_port).",
        show_default=False,
    ),
]


@contextmanager
def metrics_server(port: int | None, config: Config, ledger: Ledger) -> Iterator[int | None]:
    """Serve ``/metrics`` (with the ledger's gauges) for the duration of the block.

    Yields the bound port, or None when nothing is served.
    """
    from_config = port is None
    port = config.monitoring.metrics_port if from_config else port
    if port is None:
        yield None
        return
    from runctl.core import metrics
    from runctl.core.errors import ValidationError

    metrics.use_ledger(ledger)
    try:
        server = metrics.serve(port, addr=config.monitoring.metrics_host)
    except ValidationError as exc:
        if not from_config:
            raise
        logging.getLogger("runctl.metrics").warning("%s; continuing without /metrics", exc)
        yield None
        return
    logging.getLogger("runctl.cli").info(
        "serving metrics on http://%s:%d/metrics", server.server_address[0], server.server_port
    )
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
