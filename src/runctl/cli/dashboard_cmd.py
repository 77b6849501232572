"""``runctl dashboard``: serve the web dashboard (Now, Job, Money, Reliability) over the ledger.

Starlette and uvicorn are imported only here, when the server starts (``runctl --help`` stays
light; without the ``dashboard`` extra the command says how to install it). Bound to a loopback
address (the default) it needs no token unless ``--token`` gives one; bound anywhere else it
always needs one: ``--token``, else a fresh random one, printed in the URL to open.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import webbrowser
from typing import Annotated

import typer

from runctl.cli.state import STATE

DEFAULT_PORT = 8765
SHUTDOWN_S = 3


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    host: Annotated[
        str, typer.Option(help="Address to listen on; beyond loopback every request needs the token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token every request must carry (default: none on loopback, a random one "
            "printed in the URL elsewhere).",
            envvar="RUNCTL_DASHBOARD_TOKEN",
            show_default=False,
        ),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the dashboard in a web browser.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between live updates.")] = 2.0,
) -> None:
    """Web dashboard: running jobs, each job's attempts and log, money over time, reliability."""
    from runctl.core.errors import UsageError

    try:
        import uvicorn

        from runctl.web.app import create_app
    except ImportError as exc:
        raise UsageError(
            f"runctl dashboard needs its web server ({exc.name} is not installed)",
            hint="pip install 'runctl[dashboard]'",
        ) from None
    if token is not None and len(token) < 16:
        raise UsageError(
            "--token: too short (fewer than 16 characters)", hint="leave it out for a random one"
        )
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    ledger = STATE.ledger()
    server: uvicorn.Server | None = None
    app = create_app(
        ledger,
        STATE.loaded().config,
        token=token,
        live_interval=interval,
        stopping=lambda: server is not None and server.should_exit,  # open pages' streams end
    )
    settings = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    settings.timeout_graceful_shutdown = SHUTDOWN_S  # a request still open then is cancelled
    server = uvicorn.Server(settings)
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/now" + (f"?token={token}" if token else "")
    typer.echo(f"runctl dashboard: {url}  (Ctrl-C stops it)")
    if open_:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    server.run()
