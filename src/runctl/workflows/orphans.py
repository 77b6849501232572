"""Stopping orphans in the background: the script of a job whose runctl died is stopped by a
detached process, so the command that noticed (``runctl jobs list``) returns at once.

The stop lasts up to the job's own grace period (its script is saving, see
:mod:`runctl.providers.local`), and nobody has to wait for it:

1. :func:`stop_in_background` claims the process row (``running`` -> ``stopping``, one
   compare-and-set transaction), so of several commands noticing at once exactly one starts a
   stopper: ``python -m runctl.workflows.orphans LEDGER RESOURCE``.
2. The stopper detaches (double fork, its own session), writes its pid into the row, releases
   the resource through the lifecycle (SIGTERM, the grace period, then the whole tree) and
   records ``terminated``; a failure is a ``resource.release_failed`` event.
3. A stopper that died (its pid gone, the row still ``stopping``) is replaced by the next
   command that looks (:func:`restart_dead_stoppers`).

A new run of the same name waits for the stop before it picks its resume point
(:func:`runctl.workflows.local.wait_for_orphans`), so the checkpoint saved during the grace
period is the one it continues from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from runctl.core.ledger import Ledger, Resource
from runctl.core.shutdown import pid_alive

#: A ``stopping`` row with no stopper pid this long after its claim lost its stopper.
UNCLAIMED_S = 30.0


def stop_in_background(ledger: Ledger, resource: Resource) -> bool:
    """Claim a ``running`` process row and start its detached stopper; False if another won."""
    if not ledger.claim(
        resource.id, expect="running", state="stopping", billable=True, detail="its runctl died"
    ):
        return False
    _spawn(ledger, resource)
    return True


def restart_dead_stoppers(ledger: Ledger) -> None:
    """Start a stopper again for every ``stopping`` process row whose stopper is gone."""
    for resource in ledger.list_resources(provider="local", states=("stopping",)):
        stopper = resource.spec.get("stopper_pid")
        if pid_alive(stopper) or (stopper is None and time.time() - resource.updated_at < UNCLAIMED_S):
            continue
        _spawn(ledger, resource)


def _spawn(ledger: Ledger, resource: Resource) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUNCTL_JOB_ID"}  # not part of any job's tree
    subprocess.run(
        [sys.executable, "-m", "runctl.workflows.orphans", str(ledger.path), resource.id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        check=False,
        timeout=60,
    )  # returns as soon as the stopper has detached


def stop(ledger_path: Path, resource_id: str) -> None:
    """The stopper: release one process resource, recording the outcome."""
    from runctl.core.errors import RunctlError
    from runctl.providers.local import local_lifecycle

    with Ledger(ledger_path) as ledger:
        resource = ledger.update_spec(resource_id, stopper_pid=os.getpid())
        try:
            local_lifecycle(ledger).release(resource)
        except RunctlError as exc:
            ledger.add_event(
                "resource.release_failed", str(exc)[:500], job_id=resource.job_id, resource_id=resource.id
            )


if __name__ == "__main__":
    if os.fork():  # the parent returns to the command that started it at once
        os._exit(0)
    os.setsid()
    stop(Path(sys.argv[1]), sys.argv[2])
