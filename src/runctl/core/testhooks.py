"""Crash points for the chaos tests: ``crash_point("aws.create.after_call")`` kills this process
with SIGKILL when ``RUNCTL_CRASH_AT`` names that point, simulating a crash at the worst moment.

Off in production: nothing happens unless that variable is set. Each multi-step operation
calls ``crash_point`` between its steps (intent written, API call sent, response received,
ledger updated, …) so a test can prove every step is recoverable by ``resources reconcile``.
:data:`CRASH_POINTS` lists them all; ``tests/chaos`` kills runctl at each one and checks that
a source file never calls a point missing from the list.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RUNCTL_CRASH_AT"

#: Every crash point, by the command that passes it, in the order they are reached.
CRASH_POINTS: dict[str, tuple[str, ...]] = {
    "aws create": (
        "aws.create.intent_written",  # the ledger row exists, nothing was sent
        "aws.create.after_call",  # the instance exists, the ledger only has the intent
        "aws.create.ledger_updated",  # both agree
        "aws.create.volume_attached",  # --data-volume: attached, the command not yet done
    ),
    "aws ebs create": (
        "aws.ebs.create.intent_written",
        "aws.ebs.create.after_call",
        "aws.ebs.create.ledger_updated",
    ),
    "aws ebs snapshot": ("aws.ebs.snapshot.intent_written", "aws.ebs.snapshot.after_call"),
    "runpod create": (
        "runpod.create.intent_written",
        "runpod.create.after_call",
        "runpod.create.ledger_updated",
    ),
    "local": (
        "local.intent_written",  # the process row exists, no child yet
        "local.child_started",  # the child exists behind its gate, its pid not yet recorded
        "local.pid_recorded",  # the pid is on record, the gate not yet opened
    ),
    "workflow train": (
        "workflow.job_recorded",  # the job row exists, nothing uploaded or created
        "workflow.code_uploaded",  # the code bundle is in storage
        "workflow.machine_created",  # the machine exists (and is in the ledger), no agent yet
        "workflow.agent_started",  # the agent runs; the controller dies instead of waiting
    ),
}


def crash_point(name: str) -> None:
    """Die here, as if the machine lost power, if the tests asked for it."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
