"""``runctl checkpoint list|info|prune|resume``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

app = typer.Typer(help="Inspect, prune and resume from checkpoints.", no_args_is_help=True)

JobArg = Annotated[str | None, typer.Argument(metavar="[JOB]", help="Job id or prefix (or use --dir).")]
DirOpt = Annotated[Path | None, typer.Option("--dir", help="A checkpoint directory.")]


def _directory(job_id: str | None, directory: Path | None) -> Path:
    from runctl.core.errors import NotFoundError, UsageError, ValidationError

    if directory is None:
        if job_id is None:
            raise UsageError("give either a JOB or --dir DIR", hint="runctl checkpoint list JOB")
        job = STATE.ledger().get_job(job_id)
        if not job.checkpoint_dir:
            raise NotFoundError(f"job {job.id} has no checkpoint directory")
        directory = Path(job.checkpoint_dir)
    elif job_id is not None:
        raise UsageError("give either a JOB or --dir DIR, not both", hint="runctl checkpoint list JOB")
    if directory.exists() and not directory.is_dir():
        raise ValidationError(
            f"{directory} is a file, not a checkpoint directory",
            hint="give the directory that holds the checkpoints",
        )
    return directory


def _rows(checkpoints: list[Any]) -> list[tuple[Any, ...]]:
    return [(c.step, render.size(c.size), render.when(c.mtime), c.path) for c in checkpoints]


@app.command("list")
def list_(job_id: JobArg = None, directory: DirOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """List complete checkpoints (oldest first) with step, size and time."""
    from runctl.core.checkpoints import list_checkpoints

    found = list_checkpoints(_directory(job_id, directory))
    if output is OutputFormat.json:
        render.print_json([c.to_dict() for c in found])
    else:
        render.table(None, ["STEP", "SIZE", "TIME", "PATH"], _rows(found))


@app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="A checkpoint file or directory.")],
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show one checkpoint: step, size, time, and whether it is complete."""
    from runctl.core.checkpoints import CheckpointInfo, is_complete_name, step_of
    from runctl.core.errors import NotFoundError

    if not path.exists():
        raise NotFoundError(f"checkpoint {path} does not exist", hint="runctl checkpoint list JOB")
    stat = path.stat()
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else stat.st_size
    data = {
        **CheckpointInfo(path.resolve(), step_of(path.name), size, stat.st_mtime).to_dict(),
        "complete": is_complete_name(path.name),
    }
    if output is OutputFormat.json:
        render.print_json(data)
    else:
        render.fields([(k, v) for k, v in data.items()])


@app.command("prune")
def prune(
    job_id: JobArg = None,
    directory: DirOpt = None,
    keep_last_n: Annotated[int, typer.Option(min=1, help="How many newest checkpoints to keep.")] = 3,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Remove all but the newest N complete checkpoints."""
    from runctl.core import checkpoints

    removed = checkpoints.prune(_directory(job_id, directory), keep_last_n, dry_run=dry_run)
    if output is OutputFormat.json:
        render.print_json({"dry_run": dry_run, "removed": [c.to_dict() for c in removed]})
        return
    verb = "would remove" if dry_run else "removed"
    render.info(f"{verb} {len(removed)} checkpoint(s)")
    for checkpoint in removed:
        render.info(f"  {checkpoint.path}")


@app.command("resume")
def resume(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job to continue.")],
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Run JOB's script again (same name and arguments) from its latest checkpoint."""
    from runctl.core.checkpoints import latest_checkpoint
    from runctl.core.errors import NotFoundError, ValidationError
    from runctl.workflows.local import LocalRun, run_local

    ledger = STATE.ledger()
    job = ledger.get_job(job_id)
    if job.provider != "local":
        raise ValidationError(
            f"job {job.id} ran on {job.provider}", hint=f"use 'runctl {job.provider} train --auto-resume'"
        )
    if not job.is_final:
        raise ValidationError(
            f"job {job.id} is still {job.state}", hint="wait for it to end, or 'runctl jobs cancel' it"
        )
    latest = latest_checkpoint(Path(job.checkpoint_dir)) if job.checkpoint_dir else None
    source = latest.path if latest else (Path(job.resume_from) if job.resume_from else None)
    if source is None or not source.exists():
        raise NotFoundError(
            f"job {job.id} has no checkpoint to resume from",
            hint=f"start it afresh: runctl local {job.script}",
        )
    request = LocalRun(
        script=Path(job.script), args=job.args, name=job.name, resume_from=source, resumes=job
    )
    quiet = output is OutputFormat.json
    result = run_local(
        request, STATE.loaded().config, ledger, echo=sys.stderr.buffer if quiet else sys.stdout.buffer
    )
    if quiet:
        render.print_json({"job": result.job.to_dict(), "exit_code": result.exit_code})
    else:
        render.info(f"job {result.job.id} ({result.job.name}) {result.job.state}, resumed from {source}")
    return result.exit_code
