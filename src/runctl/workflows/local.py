"""``runctl local``: run a training script on this machine with a durable record.

The script runs under the run contract (:mod:`runctl.agent.contract`), as on every provider.

Decisions where the issue is silent:

* **Job name** defaults to the script's stem; **resume** is on by default: when the most recent
  finished job of the same name ended interrupted, failed, timed out or lost, the new job
  continues from its latest complete checkpoint (``--no-resume`` starts fresh). Resuming
  claims that job in the same transaction that records the new one: of two runs of one name
  started at once, one continues it and the other is refused (exit 65) naming the job that
  did. A run whose runctl died is first marked ``lost`` and, if its script is still being
  stopped, waited for, so the checkpoint it saved while stopping is the one continued.
* **Checkpoint directory**: ``--checkpoint-dir`` is used as given (shared across runs);
  otherwise each job gets ``<[checkpoint] dir or STATE/checkpoints>/<job id>``, so a fresh run
  never mistakes an old run's files for its own.
* **How the script runs** and how its end is named: :mod:`runctl.agent.script`, shared with the
  agent on a remote machine.
* **Outcome**: exit 0 → ``succeeded``; non-zero → ``failed`` (its code passes through);
  runctl got SIGINT/SIGTERM → ``interrupted`` (exit 130/143); ``jobs cancel`` → ``cancelled``;
  max duration → ``timed_out`` (exit 124); the job's cost reached ``[cost] max_cost_usd`` (at
  ``[local] rate_usd_per_hour``, checked every second) → stopped gracefully like a Ctrl-C, then
  ``cancelled`` with exit code 79 (see :mod:`runctl.core.budget`). A job whose runctl died
  without recording an outcome is marked ``lost`` by the next ``jobs`` command (see
  :func:`reconcile_local_jobs`).
* **A log that cannot be written** (disk full) does not change the outcome: the script ran to its
  end, its output still reached the terminal. The job keeps its state, its detail says which log
  failed and why, and runctl exits 73 when the script itself succeeded (its own code otherwise).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runctl.agent.contract import contract_env
from runctl.agent.script import classify, command_for
from runctl.core import checkpoints
from runctl.core.budget import JobBudgetWatch
from runctl.core.config import Config
from runctl.core.containment import CGROUP_PREFIX, check_cgroup_root
from runctl.core.errors import ExitCode, ValidationError
from runctl.core.ledger import RESUMABLE_JOB_STATES, Job, Ledger, Resource, new_id
from runctl.core.paths import create_private_file, ensure_dir, ensure_state_dir
from runctl.core.shutdown import ChildOutcome, StartError, Supervisor, pid_alive
from runctl.core.testhooks import crash_point
from runctl.providers.local import DEFAULT_GRACE_S, KIND, local_lifecycle, process_cloud_id, process_spec
from runctl.workflows.local_env import prepared_config

#: How often a local job's cost is checked against ``[cost] max_cost_usd`` (a ledger read).
BUDGET_CHECK_S = 1.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class LocalRun:
    """What to run. Unset fields fall back to the config."""

    script: Path
    args: list[str] = field(default_factory=list)
    name: str | None = None
    checkpoint_dir: Path | None = None
    resume: bool | None = None
    resume_from: Path | None = None
    resumes: Job | None = None  # the job that resume_from belongs to (attempt + 1)
    grace_period: float | None = None
    max_duration: float | None = None
    python: str | None = None  # --python, --setup, --deps: runctl.workflows.local_env
    setup: str | None = None
    deps: str = "none"


@dataclass
class LocalResult:
    """How the run ended: the final job row and the exit code for the CLI."""

    job: Job
    exit_code: int
    outcome: ChildOutcome


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValidationError(
            f"job name {name!r} is not allowed",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def find_resume_point(ledger: Ledger, name: str) -> tuple[Job, Path] | None:
    """The most recent finished job of ``name``, if resumable, and its latest checkpoint."""
    for job in ledger.list_jobs(name=name, limit=20):
        if not job.is_final:
            continue  # another run of the same name in progress: not ours to resume
        if job.state not in RESUMABLE_JOB_STATES:
            return None
        latest = checkpoints.latest_checkpoint(Path(job.checkpoint_dir)) if job.checkpoint_dir else None
        if latest is not None:
            return job, latest.path
        if job.resume_from and Path(job.resume_from).exists():
            return job, Path(job.resume_from)  # it saved nothing new: continue from its start
        return None
    return None


def run_local(
    request: LocalRun, config: Config, ledger: Ledger, *, echo: BinaryIO | None = None
) -> LocalResult:
    """Run ``request`` to completion under graceful shutdown; the ledger records every step."""
    script = request.script.expanduser()
    config = prepared_config(config, script, python=request.python, setup=request.setup, deps=request.deps)
    argv = [*command_for(script, config), *request.args]
    name = validate_name(request.name or script.stem)
    grace = request.grace_period or config.local.grace_period
    if config.local.cgroup_root is not None:
        check_cgroup_root(config.local.cgroup_root)  # a bad one is refused before anything is recorded
    max_duration = request.max_duration or config.local.max_duration

    resume_job: Job | None = request.resumes
    resume_from = request.resume_from
    if resume_from is None and (config.checkpoint.resume if request.resume is None else request.resume):
        reconcile_local_jobs(ledger)  # a run whose runctl died is resumable once marked lost
        for previous in ledger.list_jobs(name=name, limit=1):
            wait_for_orphans(ledger, previous)  # its script may still be saving
        if found := find_resume_point(ledger, name):
            resume_job, resume_from = found

    job_id = new_id("j")
    state = ensure_state_dir()
    root = config.checkpoint.dir or state / "checkpoints"
    checkpoint_dir = (request.checkpoint_dir or root / job_id).expanduser().resolve()
    ensure_dir(checkpoint_dir, what="checkpoint directory")
    log_dir = ensure_dir(state / "logs", what="log directory")
    create_private_file(log_dir / f"{job_id}.log")  # 0600 before the runner appends to it
    job = ledger.create_job(
        job_id=job_id,
        name=name,
        provider="local",
        script=str(script.resolve()),
        args=request.args,
        workdir=str(Path.cwd()),
        checkpoint_dir=str(checkpoint_dir),
        log_path=str(log_dir / f"{job_id}.log"),
        resume_from=str(resume_from) if resume_from else None,
        attempt=resume_job.attempt + 1 if resume_job else 1,
        runner_pid=os.getpid(),
        resumes=resume_job,
    )
    if resume_from:
        source = f" (job {resume_job.id}, {resume_job.state})" if resume_job else ""
        ledger.add_event("job.resume", f"resuming from {resume_from}{source}", job_id=job.id)

    env = contract_env(
        os.environ,
        job_id=job.id,
        job_name=name,
        checkpoint_dir=checkpoint_dir,
        attempt=job.attempt,
        resume_from=Path(resume_from) if resume_from else None,
        keep_last_n=config.checkpoint.keep_last_n,
    )

    # Counted only where something exports them: that (--metrics-port, [monitoring] textfile or
    # pushgateway, a library user) imported the metrics module; a plain run does not pay for it.
    metrics = sys.modules.get("runctl.core.metrics")
    lifecycle = local_lifecycle(ledger)
    cgroup = config.local.cgroup_root / f"{CGROUP_PREFIX}{job.id}" if config.local.cgroup_root else None
    # Intent before action: the row exists before the script does (it starts behind a gate).
    intent = ledger.record_intent(
        provider="local",
        kind=KIND,
        job_id=job.id,
        spec=process_spec(argv, grace_period=grace, cgroup=cgroup),
    )
    crash_point("local.intent_written")
    process: list[Resource] = []

    def on_start(pid: int) -> None:
        crash_point("local.child_started")  # the child exists, gated: only the intent is on record
        process.append(
            lifecycle.created(
                intent,
                cloud_id=process_cloud_id(pid),
                state="running",
                rate_usd_per_hour=config.local.rate_usd_per_hour,
            )
        )
        ledger.update_job(job.id, state="running", started_at=time.time())
        crash_point("local.pid_recorded")  # on record; the gate is not open yet
        if metrics is not None:
            metrics.JOBS_STARTED.labels(provider="local").inc()

    watch = JobBudgetWatch(ledger, job.id, config.cost)

    def check_budget() -> None:
        if (reason := watch.check()) is not None:
            supervisor.request_stop(reason)

    supervisor = Supervisor(
        argv,
        env=env,
        grace_period=grace,
        max_duration=max_duration,
        log_path=Path(job.log_path or log_dir / f"{job.id}.log"),
        echo=echo,
        on_start=on_start,
        on_tick=check_budget if watch.active else None,
        tick_interval=BUDGET_CHECK_S,
        tree_tag=f"RUNCTL_JOB_ID={job.id}",
        cgroup=cgroup,
        max_log_size=config.local.max_log_size,
    )
    try:
        outcome = supervisor.run()
    except BaseException as exc:
        ledger.finish_job(job.id, "failed", detail=f"runctl could not run the script: {exc}")
        if process:
            lifecycle.transition(process[0], "terminated", detail="runner failed")
        else:
            lifecycle.transition(intent, "create_failed", detail=f"not started: {exc}"[:500])
        if isinstance(exc, StartError):  # the exec itself failed: bad script
            raise ValidationError(
                f"cannot run {script}: {exc.strerror or exc}",
                hint="an executable script needs a first line '#!' naming an interpreter that "
                "exists (e.g. #!/bin/sh), or give a .py file",
            ) from exc
        raise
    for resource in process:
        lifecycle.transition(resource, "terminated", detail=f"exit code {outcome.returncode}")

    if config.checkpoint.keep_last_n:
        checkpoints.prune(checkpoint_dir, config.checkpoint.keep_last_n)
    latest = checkpoints.latest_checkpoint(checkpoint_dir)
    cancelled = ledger.get_job(job.id).cancel_requested
    final_state, exit_code, detail = classify(outcome, cancelled=cancelled, stopped_for=watch.reason)
    if outcome.log_error:
        detail = f"{detail}; {outcome.log_error}" if detail else outcome.log_error
        exit_code = exit_code or int(ExitCode.CANT_CREATE)
    ledger.finish_job(
        job.id,
        final_state,
        exit_code=exit_code,
        detail=detail,
        last_checkpoint=str(latest.path) if latest else None,
    )
    if metrics is not None and final_state == "succeeded":
        metrics.JOBS_COMPLETED.labels(provider="local").inc()
    elif metrics is not None:
        metrics.JOBS_FAILED.labels(provider="local", outcome=final_state).inc()
    return LocalResult(job=ledger.get_job(job.id), exit_code=exit_code, outcome=outcome)


def reconcile_local_jobs(ledger: Ledger) -> list[Job]:
    """Mark ``lost`` the local jobs of this host whose runctl process died mid-run.

    Their script, if it outlived runctl, is stopped in the background exactly as its runner
    would have stopped it (see :mod:`runctl.workflows.orphans`): this returns at once.
    """
    import socket

    from runctl.workflows.orphans import restart_dead_stoppers, stop_in_background

    lost = []
    host = socket.gethostname()
    lifecycle = local_lifecycle(ledger)
    for job in ledger.list_jobs(provider="local", states=("pending", "running")):
        if job.host != host or pid_alive(job.runner_pid):
            continue
        stopping = []
        for resource in ledger.list_resources(job_id=job.id, include_gone=False):
            if resource.state == "running":
                if stop_in_background(ledger, resource):
                    stopping.append(_grace_of(resource))
            elif resource.state == "intent":  # never ran: its gate closed with runctl
                lifecycle.release(resource)
        latest = checkpoints.latest_checkpoint(Path(job.checkpoint_dir)) if job.checkpoint_dir else None
        detail = "runctl stopped without recording an outcome"
        if stopping:
            detail += f"; {_STOPPING} (up to {max(stopping):g}s to save)"
        if ledger.finish_job(
            job.id, "lost", detail=detail, last_checkpoint=str(latest.path) if latest else None
        ):
            lost.append(ledger.get_job(job.id))
    restart_dead_stoppers(ledger)
    return lost


_STOPPING = "its script is being stopped in the background"


def _grace_of(resource: Resource) -> float:
    return float(resource.spec.get("grace_period") or DEFAULT_GRACE_S)


def lost_message(job: Job) -> str:
    """What to tell the user about a job :func:`reconcile_local_jobs` marked lost."""
    stopping = f"; {_STOPPING}" if _STOPPING in (job.detail or "") else ""
    return f"job {job.id} marked lost: its runctl process is gone{stopping}"


def wait_for_orphans(ledger: Ledger, job: Job) -> None:
    """Wait until the script of ``job`` (a run whose runctl died) has been stopped, so that
    its last save is complete before anyone resumes from it."""
    from runctl.core.containment import KILL_TIMEOUT_S

    def live() -> list[Resource]:
        return [r for r in ledger.list_resources(job_id=job.id, include_gone=False) if r.state == "stopping"]

    if not (rows := live()):
        return
    grace = max(_grace_of(r) for r in rows)
    logging.getLogger("runctl.local").warning(
        f"waiting up to {grace:g}s for job {job.id}'s script to finish saving before resuming"
    )
    deadline = time.monotonic() + grace + 2 * KILL_TIMEOUT_S
    while live() and time.monotonic() < deadline:
        time.sleep(0.2)
