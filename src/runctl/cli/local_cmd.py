"""``runctl local``: run a training script on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from runctl.cli.observe import MetricsPortOpt, metrics_server
from runctl.cli.options import OutputOpt, duration_arg
from runctl.cli.render import OutputFormat, info, print_json
from runctl.cli.state import STATE


def local(
    script: Annotated[Path, typer.Argument(help="The training script (.py, or any executable).")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments for the script (after --).")] = None,
    name: Annotated[str | None, typer.Option(help="Job name (default: the script's name).")] = None,
    checkpoint_dir: Annotated[
        str | None, typer.Option(help="Checkpoint directory (default: one per job).")
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="Continue from the latest checkpoint of the last interrupted or failed job of "
            "the same name (default: on).",
            show_default=False,
        ),
    ] = None,
    grace_period: Annotated[
        str | None, typer.Option(help="Time the script gets to save after SIGTERM (e.g. 30s).")
    ] = None,
    max_duration: Annotated[
        str | None, typer.Option(help="Stop the job gracefully after this long (e.g. 2h).")
    ] = None,
    python: Annotated[str | None, typer.Option(help="Interpreter for a .py script.")] = None,
    setup: Annotated[
        str | None, typer.Option(help="Shell command run before the script (its failure stops the run).")
    ] = None,
    deps: Annotated[
        Literal["auto", "none"],
        typer.Option(help="auto: install the project's requirements.txt or pyproject.toml in a cached venv."),
    ] = "none",
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Run SCRIPT locally with a durable record, graceful shutdown and resume.

    Example: runctl local train.py -- --epochs 3
    """
    from runctl.core.logs import is_json
    from runctl.workflows.local import LocalRun, run_local

    if checkpoint_dir is not None and not checkpoint_dir.strip():
        from runctl.core.errors import UsageError

        # typer would read '' as Path('.'): the current directory, silently
        raise UsageError("--checkpoint-dir is empty", hint="give a directory, or leave the option out")
    request = LocalRun(
        script=script,
        args=list(args or []),
        name=name,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
        resume=resume,
        grace_period=duration_arg("--grace-period", grace_period),
        max_duration=duration_arg("--max-duration", max_duration),
        python=python,
        setup=setup,
        deps=deps,
    )
    config = STATE.loaded().config
    ledger = STATE.ledger()
    quiet = output is OutputFormat.json
    echo = sys.stderr.buffer if quiet else sys.stdout.buffer
    if quiet and is_json():
        echo = None  # stderr carries JSON log lines only; the output stays in the job's log file
    with metrics_server(metrics_port, config, ledger):
        result = run_local(request, config, ledger, echo=echo)
    job = result.job
    if quiet:
        print_json({"job": job.to_dict(), "exit_code": result.exit_code})
    else:
        resumed = f", resumed from {job.resume_from}" if job.resume_from else ""
        info(f"job {job.id} ({job.name}) {job.state}{resumed}", job_id=job.id)
        if job.last_checkpoint:
            info(f"last checkpoint: {job.last_checkpoint}", job_id=job.id)
        info(f"log: {job.log_path}", job_id=job.id)
        if result.outcome.log_error:
            info(f"error: {result.outcome.log_error} (exit {result.exit_code})", job_id=job.id)
    return result.exit_code
