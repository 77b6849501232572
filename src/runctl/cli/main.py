"""Entry point: the typer app, global options, and the one place errors become exit codes.

Every :class:`RunctlError` is printed as one ``error:`` line plus a ``hint:`` line and exits
with its documented code; usage errors exit 64; anything unexpected is an internal error
(70). Tracebacks only with ``--debug`` (or ``RUNCTL_DEBUG=1``).

The command tree is lazy: a command's module is imported, and typer turns it into a click
command, only when that command runs or its ``--help`` is asked for (``runctl local`` loads
``local_cmd`` and nothing of ``aws_cmd``, ``s3_cmd``...). ``runctl --help`` lists every command
from :data:`COMMANDS` without importing any (``tests/test_cli.py`` checks that list against the
real commands' help). ``app`` (for the reference generator) is the whole tree, built on access.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import typer.core
import typer.main

from runctl.cli.state import STATE
from runctl.version import __version__


def _function(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(import_module(f"runctl.cli.{module}"), name)


def _group(module: str, name: str = "app", extra: Iterable[tuple[str, str]] = ()) -> Callable[[], Any]:
    """A sub-app; ``extra``: ``(command, function in train_cmd)`` pairs it also carries."""

    def load() -> Any:
        group = getattr(import_module(f"runctl.cli.{module}"), name)
        if extra:
            from runctl.cli import train_cmd

            present = {info.name for info in group.registered_commands}
            for command, function in extra:
                if command not in present:  # the whole tree and a lazy load may both attach it
                    group.command(command)(getattr(train_cmd, function))
        return group

    return load


#: Every top-level command, in help order: name -> (loader, the line ``runctl --help`` shows).
#: A loader returns the command's function, or its sub-app (a ``typer.Typer``).
COMMANDS: dict[str, tuple[Callable[[], Any], str]] = {
    "init": (_function("config_cmd", "init"),
             "Write a commented .runctl.toml with every key and its default."),
    "local": (_function("local_cmd", "local"),
              "Run SCRIPT locally with a durable record, graceful shutdown and resume."),
    "logs": (_function("jobs_cmd", "logs"), "Print a job's log (stdout and stderr of its script)."),
    "events": (_function("jobs_cmd", "events"),
               "Show the ledger's event log (oldest of the selection first)."),
    "top": (_function("top_cmd", "top"),
            "Live dashboard: running jobs, cost, resources, events; keys to open a log or stop a job."),
    "dashboard": (_function("dashboard_cmd", "dashboard"),
                  "Web dashboard: running jobs, each job's attempts and log, money over time, reliability."),
    "monitor": (_function("monitor_cmd", "monitor"),
                "Print a log file, or the checkpoints in a directory; --follow keeps watching."),
    "doctor": (_function("doctor_cmd", "doctor"),
               "Check the config, state dir, ledger, AWS and RunPod credentials, storage and clock."),
    "config": (_group("config_cmd"), "Show and check the configuration."),
    "jobs": (_group("jobs_cmd", extra=[("wait", "jobs_wait"), ("resume", "jobs_resume")]),
             "List, inspect and cancel jobs."),
    "checkpoint": (_group("checkpoint_cmd"), "Inspect, prune and resume from checkpoints."),
    "runpod": (_group("runpod_cmd", extra=[("train", "runpod_train")]),
               "RunPod GPU pods: prices, create, list, stop, resume, terminate."),
    "aws": (_group("aws_cmd", extra=[("train", "aws_train")]),
            "EC2 instances and EBS volumes, tracked in the ledger."),
    "resources": (_group("resources_cmd"),
                  "Everything runctl created: list, summarize, reconcile with the clouds, clean up."),
    "cost": (_group("cost_cmd"), "Cost: catalogue prices, reports of what was spent, estimates, budgets."),
    "s3": (_group("s3_cmd"), "Copy, sync, list and clean up files in S3 (or any S3-compatible store)."),
    "workflow": (_group("train_cmd", "workflow_app"),
                 "Multi-step workflows (create → train → collect → release)."),
    "notify": (_group("notify_cmd"), "Notifications to apprise URLs ([notify] urls)."),
    "agent": (_group("agent_cmd"), "The on-machine agent (started by the providers; rarely run by hand)."),
}  # fmt: skip


class _LazyGroup(typer.core.TyperGroup):
    """The top-level group: lists every command of :data:`COMMANDS`, builds one when it is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            built: Any = typer.main.get_command(_build([cmd_name]))
            self.commands[cmd_name] = built.commands[cmd_name]
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:  # typer suggests from the loaded commands only
            message = getattr(exc, "message", None)
            if args and isinstance(message, str) and "Did you mean" not in message:
                from difflib import get_close_matches

                if matches := get_close_matches(args[0], list(COMMANDS)):
                    exc.message = f"{message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = []
        for name, (_load, line) in COMMANDS.items():
            loaded = self.commands.get(name)
            stub = loaded or typer.core.TyperCommand(name, help=line)
            rows.append((name, stub.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _build(names: Iterable[str]) -> typer.Typer:
    """The runctl app with the global options and the commands ``names`` (the others lazy)."""
    app = typer.Typer(
        name="runctl",
        cls=_LazyGroup,
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
    app.callback()(_global)
    for name in names:
        loaded = COMMANDS[name][0]()
        if isinstance(loaded, typer.Typer):
            app.add_typer(loaded, name=name)
        else:
            app.command(name)(loaded)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole tree: the reference generator walks it
        return _build(COMMANDS)
    raise AttributeError(name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runctl {__version__}")
        raise typer.Exit()


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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code."""
    from runctl.core.errors import ExitCode, RunctlError

    debug = os.environ.get("RUNCTL_DEBUG", "").lower() in ("1", "true", "yes")
    try:
        result = _build(())(args=argv, prog_name="runctl", standalone_mode=False)
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
