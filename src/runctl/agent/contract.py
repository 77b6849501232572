"""The run contract every provider honours: the environment a training script runs in.

* ``RUNCTL_JOB_ID`` — the job's ledger id;
* ``RUNCTL_JOB_NAME`` — its name;
* ``RUNCTL_CHECKPOINT_DIR`` — a directory (created) for its checkpoints;
* ``RUNCTL_RESUME_FROM`` — only when resuming: the latest complete checkpoint to continue from
  (never inherited from runctl's own environment);
* ``RUNCTL_ATTEMPT`` — 1, 2, …; ``RUNCTL_KEEP_LAST_N`` when configured;
* ``RUNCTL_OUTPUT_DIR`` — remote runs only: files left there are uploaded as the job's outputs;
* ``RUNCTL_PROGRESS_FILE`` — remote runs only: a file the script touches to say it is making
  progress (``Checkpointer.progress()``; the agent's hang watchdog, :mod:`runctl.agent.watchdog`);
* ``PYTHONUNBUFFERED=1`` so logs stream as they are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: Never passed on from runctl's own environment: they belong to one run.
_NOT_INHERITED = ("RUNCTL_RESUME_FROM", "RUNCTL_PROGRESS_FILE")


def contract_env(
    base: Mapping[str, str],
    *,
    job_id: str,
    job_name: str,
    checkpoint_dir: Path,
    attempt: int,
    resume_from: Path | None = None,
    keep_last_n: int | None = None,
    output_dir: Path | None = None,
    progress_file: Path | None = None,
) -> dict[str, str]:
    """``base`` plus the contract's variables."""
    env = {k: v for k, v in base.items() if k not in _NOT_INHERITED}
    env.update(
        RUNCTL_JOB_ID=job_id,
        RUNCTL_JOB_NAME=job_name,
        RUNCTL_CHECKPOINT_DIR=str(checkpoint_dir),
        RUNCTL_ATTEMPT=str(attempt),
        PYTHONUNBUFFERED="1",
    )
    if resume_from is not None:
        env["RUNCTL_RESUME_FROM"] = str(resume_from)
    if keep_last_n:
        env["RUNCTL_KEEP_LAST_N"] = str(keep_last_n)
    if output_dir is not None:
        env["RUNCTL_OUTPUT_DIR"] = str(output_dir)
    if progress_file is not None:
        env["RUNCTL_PROGRESS_FILE"] = str(progress_file)
    return env
