"""Entry point: the typer app, global options, and the one place errors become exit codes.

Every :class:`RunctlError` is printed as one ``error:`` line plus a ``hint:`` line and exits
with its documented code; usage errors exit 64; anything unexpected is an internal error
(70). Tracebacks only with ``--debug`` (or ``RUNCTL_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from runctl.cli import (
    agent_cmd,
    aws_cmd,
    checkpoint_cmd,
    config_cmd,
    cost_cmd,
    doctor_cmd,
    jobs_cmd,
    local_cmd,
    monitor_cmd,
    notify_cmd,
    resources_cmd,
    runpod_cmd,
    s3_cmd,
    top_cmd,
    train_cmd,
)
from runctl.cli.state import STATE
from runctl.version import __version__

app = typer.Typer(
    name="runctl",
    help="Run ML training jobs locally, on AWS EC2 and on RunPod: nothing leaks, nothing is "
    "lost, every dollar is visible.",
    epilog="Docs: docs/ in the repository (`./dev docs` builds the site): getting started, guides; "
    "every command and option in docs/reference/cli.md, every config key in docs/reference/config.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
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
    log_format: Annotated[
        Literal["text", "json"] | None,
        typer.Option(
            "--log-format",
            help="Logs on stderr: text for people, json for one object per line "
            "(default: the config's monitoring.log_format, else text).",
            envvar="RUNCTL_LOG_FORMAT",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail (-v info, -vv debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    STATE.config_path = config
    STATE.debug = debug
    STATE.log_format = log_format
    STATE.verbosity = -1 if quiet else verbose
    from runctl.core.logs import setup_logging

    setup_logging(STATE.log_format, verbosity=STATE.verbosity)
    if config is not None and not config.expanduser().is_file():
        from runctl.core.errors import ConfigError

        # every command, even one that never reads the config, must not run on the wrong one
        raise ConfigError(
            f"config file {config} "
            + ("is a directory, not a file" if config.expanduser().is_dir() else "does not exist"),
            path=str(config),
            hint="check the --config path (or RUNCTL_CONFIG), or run 'runctl init' to write one",
        )
    ctx.call_on_close(STATE.export_metrics)


app.command("init")(config_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.command("local")(local_cmd.local)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("logs")(jobs_cmd.logs)
app.command("events")(jobs_cmd.events)
app.add_typer(checkpoint_cmd.app, name="checkpoint")
app.command("top")(top_cmd.top)
app.command("monitor")(monitor_cmd.monitor)
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(runpod_cmd.app, name="runpod")
app.add_typer(aws_cmd.app, name="aws")
app.add_typer(resources_cmd.app, name="resources")
app.add_typer(cost_cmd.app, name="cost")
app.add_typer(s3_cmd.app, name="s3")
aws_cmd.app.command("train")(train_cmd.aws_train)
runpod_cmd.app.command("train")(train_cmd.runpod_train)
app.add_typer(train_cmd.workflow_app, name="workflow")
jobs_cmd.app.command("wait")(train_cmd.jobs_wait)
jobs_cmd.app.command("resume")(train_cmd.jobs_resume)
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(notify_cmd.app, name="notify")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code."""
    from runctl.core.errors import ExitCode, RunctlError

    debug = os.environ.get("RUNCTL_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        result = app(args=argv, prog_name="runctl", standalone_mode=False)
    except RunctlError as exc:
        from runctl.core.logs import report_error

        report_error(exc, debug=STATE.debug or debug)
        sys.exit(int(exc.exit_code))
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        show = getattr(exc, "show", None)  # typer's click errors print themselves, usage line included
        if callable(show):
            show()
        else:
            sys.stderr.write(f"Error: {exc.format_message()}\n")
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
        from runctl.core.logs import report_internal_error

        report_internal_error(exc, debug=STATE.debug or debug)  # redacted, even the traceback
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(result if isinstance(result, int) else 0)
