"""``runctl notify test``: send a test message to the ``[notify] urls`` (and ``--url``)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from runctl.cli import render
from runctl.cli.state import STATE

app = typer.Typer(help="Notifications to apprise URLs ([notify] urls).", no_args_is_help=True)


@app.command("test")
def test(
    url: Annotated[
        list[str] | None,
        typer.Option("--url", help="An apprise URL to try besides [notify] urls; repeatable."),
    ] = None,
) -> None:
    """Send a test message to every configured URL; exit 69 when one did not take it."""
    from runctl.clients.notify import Notifier
    from runctl.core.errors import CloudProviderError, ConfigError

    urls = [u.get_secret_value() for u in STATE.loaded().config.notify.urls] + list(url or [])
    if not urls:
        raise ConfigError(
            "no notification URL configured",
            key="notify.urls",
            hint='set [notify] urls = ["json://host/path"] in .runctl.toml, or give --url',
        )
    sent = Notifier(urls).send(
        f"test-{int(time.time())}", "runctl: test", "a test message from runctl notify test"
    )
    if not sent:
        raise CloudProviderError(
            f"the test message did not reach all {len(urls)} URL(s)",
            hint="check each URL (apprise syntax) and that its service is reachable",
        )
    render.info(f"test message sent to {len(urls)} URL(s)")
