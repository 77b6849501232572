"""``runctl monitor --log FILE | --checkpoint DIR [--follow]``: watch any log or checkpoint
directory, whether or not runctl started the job (the original tool's monitor commands).

``--follow`` runs until Ctrl-C (exit 130, like ``tail -f``). With ``--output json`` a plain
``--checkpoint`` listing is one JSON array; ``--follow`` writes one JSON object per line per
change (``{"event": "checkpoint" | "removed", ...}``) so it can be piped into ``jq``. A
directory that does not exist yet is waited for when following (the job may not have started)
and is an error otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt, finite_number
from runctl.cli.render import OutputFormat


def monitor(
    log: Annotated[Path | None, typer.Option("--log", help="A log file to print.")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="A checkpoint directory to watch.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing what is added, until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(parser=finite_number(0.05, 3600), help="Seconds between looks (--follow)."),
    ] = 1.0,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a log file, or the checkpoints in a directory; --follow keeps watching.

    Examples: runctl monitor --log train.log -f;  runctl monitor --checkpoint ckpts/ -f
    """
    from runctl.core.errors import UsageError

    if log is not None and checkpoint is None:
        _log(log, follow=follow, interval=interval)
    elif checkpoint is not None and log is None:
        _checkpoints(checkpoint, follow=follow, interval=interval, output=output)
    else:
        raise UsageError(
            "give exactly one of --log FILE or --checkpoint DIR",
            hint="runctl monitor --log train.log --follow",
        )


def _log(path: Path, *, follow: bool, interval: float) -> None:
    from runctl.core.errors import NotFoundError, ValidationError
    from runctl.workflows.jobs import follow_log

    if path.is_dir():
        raise ValidationError(f"{path} is a directory, not a log file", hint="give the log file's path")
    out = sys.stdout.buffer
    if follow:
        for chunk in follow_log(path, until=lambda: False, poll=interval):
            out.write(chunk)
            out.flush()
        return
    if not path.exists():
        raise NotFoundError(f"log file {path} does not exist", hint="check the path, or add --follow to wait")
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            out.write(chunk)
    out.flush()


def _checkpoints(directory: Path, *, follow: bool, interval: float, output: OutputFormat) -> None:
    from runctl.core.checkpoints import list_checkpoints
    from runctl.core.errors import NotFoundError, ValidationError

    if directory.exists() and not directory.is_dir():
        raise ValidationError(
            f"{directory} is a file, not a checkpoint directory",
            hint="give the directory that holds the checkpoints",
        )
    if not follow:
        if not directory.is_dir():
            raise NotFoundError(
                f"checkpoint directory {directory} does not exist",
                hint="check the path, or add --follow to wait for it",
            )
        found = list_checkpoints(directory)
        if output is OutputFormat.json:
            render.print_json([c.to_dict() for c in found])
        else:
            render.table(
                None,
                ["STEP", "SIZE", "TIME", "PATH"],
                [(c.step, render.size(c.size), render.when(c.mtime), c.path) for c in found],
            )
        return
    if not directory.is_dir():
        render.info(f"waiting for {directory} to appear")
    seen: dict[Path, float] = {}
    while True:
        current = {c.path: c for c in list_checkpoints(directory)}
        for path, info in current.items():
            if seen.get(path) != info.mtime:
                _emit({"event": "checkpoint", **info.to_dict()}, output)
        for path in seen.keys() - current.keys():
            _emit({"event": "removed", "path": str(path)}, output)
        seen = {path: info.mtime for path, info in current.items()}
        time.sleep(interval)


def _emit(event: dict[str, Any], output: OutputFormat) -> None:
    from rich.markup import escape

    if output is OutputFormat.json:
        sys.stdout.write(render.json_text(event, indent=None) + "\n")
        sys.stdout.flush()
        return
    if event["event"] == "removed":
        render.console().print(f"[dim]removed[/]     {escape(event['path'])}", highlight=False)
    else:
        step = "" if event["step"] is None else f"step {event['step']}, "
        render.console().print(
            f"[green]checkpoint[/]  {escape(event['path'])}  ({step}{render.size(event['size'])}, "
            f"{render.when(event['mtime'])})",
            highlight=False,
        )
