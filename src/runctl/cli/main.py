"""Entry point: the typer app, global options, and the one place errors become exit codes.

Every :class:`RunctlError` is printed as one ``error:`` line plus a ``hint:`` line and exits
with its documented code; usage errors exit 64; anything unexpected is an internal error
(70). Tracebacks only with ``--debug`` (or ``RUNCTL_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from runctl import __version__
from runctl.cli import checkpoint_cmd, config_cmd, jobs_cmd, local_cmd
from runctl.cli.state import STATE

app = typer.Typer(
    name="runctl",
    help="Run ML training jobs locally, on AWS EC2 and on RunPod: nothing leaks, nothing is "
    "lost, every dollar is visible.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: nearest .runctl.toml).", envvar="RUNCTL_CONFIG"
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors.", envvar="RUNCTL_DEBUG")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    STATE.config_path = config
    STATE.debug = debug


app.command("init")(config_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.command("local")(local_cmd.local)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("logs")(jobs_cmd.logs)
app.command("events")(jobs_cmd.events)
app.add_typer(checkpoint_cmd.app, name="checkpoint")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code."""
    from runctl.core.errors import ExitCode, RunctlError

    debug = os.environ.get("RUNCTL_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        result = app(args=argv, prog_name="runctl", standalone_mode=False)
    except RunctlError as exc:
        from runctl.cli.render import error

        if STATE.debug or debug:
            import traceback

            traceback.print_exc()
        error(str(exc), exc.hint)
        sys.exit(int(exc.exit_code))
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        exc.show()  # type: ignore[attr-defined]
        if "No such option" in str(exc):
            sys.stderr.write(
                "hint: arguments for your script go after '--': runctl local train.py -- --lr 0.1\n"
            )
        sys.exit(int(ExitCode.USAGE))
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\nrunctl: interrupted\n")
        sys.exit(int(ExitCode.SIGINT))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(int(ExitCode.FAILURE))
    except Exception as exc:
        from runctl.cli.render import error

        if STATE.debug or debug:
            raise
        error(
            f"internal error: {type(exc).__name__}: {exc}",
            "run again with --debug for a traceback, and report it",
        )
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(result if isinstance(result, int) else 0)
