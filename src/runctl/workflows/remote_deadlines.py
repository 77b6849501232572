"""How a remote job ends when its agent never starts or its controller hits an error.

* **Agent start deadline.** An attempt whose agent has written no heartbeat (``status.json``
  for this attempt) within ``[remote] agent_start_timeout`` of the controller seeing its machine
  ``running`` ends ``failed_setup``: the detail says so and carries what the provider can tell
  about the start command (on EC2 the SSM command's status and the end of its output; RunPod's
  API keeps no log of a pod's command, so the detail says the logs are unavailable), and every
  live machine of the job is released. The agent writes its first status before it fetches code
  or checkpoints, so the deadline covers the agent's own bootstrap (pip install, start), not the
  user's setup or the script. On EC2 the wait for SSM registration before the start command is
  bounded by the same value (:mod:`runctl.providers.aws.ssm`).
* **Ctrl-C before the first heartbeat** never detaches: a machine whose agent never started has
  nothing that would ever stop it. It is released and the job recorded ``cancelled``.
* **Errors in the wait loop.** Anything raised while following a job or starting its next
  attempt (a replacement machine that cannot take its start command, an API that refuses)
  ends the job — ``no_capacity`` for a capacity error, ``failed_setup`` for any other runctl
  error, ``failed`` for an unexpected one (re-raised after) — and releases its machines, so
  no job stays ``running`` with a machine billing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runctl.core.errors import CapacityError, ExitCode, RunctlError
from runctl.core.ledger import Job, Ledger
from runctl.core.lifecycle import Lifecycle
from runctl.providers.base import ComputeProvider


@dataclass
class AgentStartWatch:
    """The agent start deadline of one attempt (see the module docstring)."""

    timeout: float
    running_since: float | None = None  # monotonic time the machine was first seen running
    started: bool = False  # a heartbeat of this attempt was seen

    def overdue(self, machine_state: str | None, attempt_status: dict[str, Any]) -> bool:
        """Whether the deadline has passed without a heartbeat of this attempt."""
        self.started = self.started or bool(attempt_status)
        if self.started:
            return False
        now = time.monotonic()
        if machine_state == "running" and self.running_since is None:
            self.running_since = now
        return self.running_since is not None and now - self.running_since > self.timeout


def fail_agent_start(
    ledger: Ledger, provider: ComputeProvider, job: Job, timeout: float, *, say: Callable[[str], None]
) -> dict[str, Any]:
    """Release the job's machines after a missed start deadline; the final status to record."""
    detail = (
        f"the agent of attempt {job.attempt} wrote no heartbeat within [remote] agent_start_timeout "
        f"({timeout:g}s after its machine was running): {_start_report(ledger, provider, job)}"
    )
    say(f"job {job.id}: {detail}; releasing its machine")
    _release(ledger, provider, job.id, say)
    return {"detail": detail, "exit_code": int(ExitCode.RESOURCE)}


def _start_report(ledger: Ledger, provider: ComputeProvider, job: Job) -> str:
    """What the provider knows of the attempt's start command (its output, if it keeps one)."""
    for event in reversed(ledger.events(job_id=job.id, limit=1000)):
        if event.kind == "job.attempt" and event.data.get("attempt") == job.attempt:
            machine = ledger.get_resource(event.resource_id) if event.resource_id else None
            handle = event.data.get("handle")
            if machine is not None and handle:
                return provider.start_report(machine, str(handle))
    return "the start command is not on record"


def end_on_error(
    ledger: Ledger,
    provider: ComputeProvider,
    job_id: str,
    exc: Exception,
    *,
    say: Callable[[str], None],
) -> tuple[Job, int]:
    """End ``job_id`` after ``exc`` escaped its wait loop: release its machines, record an
    outcome; the job and the exit code. An error that is not runctl's is re-raised after."""
    if isinstance(exc, CapacityError):
        state, code = "no_capacity", int(exc.exit_code)
    elif isinstance(exc, RunctlError):
        state, code = "failed_setup", int(exc.exit_code)
    else:
        state, code = "failed", int(ExitCode.INTERNAL)
    _release(ledger, provider, job_id, say)
    ledger.finish_job(job_id, state, exit_code=code, detail=f"the controller stopped: {exc}"[:1000])
    if not isinstance(exc, RunctlError):
        raise exc
    say(f"job {job_id} {state}: {exc}")
    return ledger.get_job(job_id), code


def release_before_detach(
    ledger: Ledger, provider: ComputeProvider, job: Job, signum: int, *, say: Callable[[str], None]
) -> Job:
    """Ctrl-C before the agent's first heartbeat: release instead of detaching (see above)."""
    say(f"job {job.id}: its agent has not started yet: releasing the machine instead of detaching")
    _release(ledger, provider, job.id, say)
    ledger.finish_job(
        job.id,
        "cancelled",
        exit_code=128 + signum,
        detail="Ctrl-C on the controller before the agent started: machine released",
    )
    return ledger.get_job(job.id)


def _release(ledger: Ledger, provider: ComputeProvider, job_id: str, say: Callable[[str], None]) -> None:
    try:
        Lifecycle(ledger, {provider.name: provider}).cleanup_on_failure(job_id)
    except RunctlError as exc:
        say(f"{exc} (still recorded as live: 'runctl resources cleanup' retries)")
