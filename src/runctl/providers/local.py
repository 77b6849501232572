"""The local provider: this machine. Its one resource kind is the job's process tree.

Tracking the training process as a ledger resource (cloud id ``<pid>@<host>``) gives local
jobs the same lifecycle and cost path as cloud ones. The row is written (state ``intent``)
before the script starts and carries what stopping it needs: its grace period and its cgroup.
A ``runctl local`` killed with SIGKILL leaves its script training; ``release`` stops it exactly
as its runner would have (SIGTERM to its group, the job's own grace period to save, then SIGKILL
to everything left of its tree, see :mod:`runctl.core.containment`). Only processes that carry
the job's ``RUNCTL_JOB_ID`` are touched, so a reused pid never is. The rate is
``[local] rate_usd_per_hour`` (0 by default: your own machine).
"""

from __future__ import annotations

import socket
from pathlib import Path

from runctl.core.containment import ProcessTree
from runctl.core.errors import ResourceError
from runctl.core.ledger import Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.providers.base import ResourceProvider

KIND = "process"
#: The grace period of a row written before it was stored with the job (the config default).
DEFAULT_GRACE_S = 30.0


def process_cloud_id(pid: int) -> str:
    return f"{pid}@{socket.gethostname()}"


def process_spec(argv: list[str], *, grace_period: float, cgroup: Path | None) -> dict[str, object]:
    """What a process row stores so that anyone can stop the job as its runner would."""
    return {"argv": argv, "grace_period": grace_period, "cgroup": str(cgroup) if cgroup else None}


class LocalProvider(ResourceProvider):
    """Processes on this machine."""

    name = "local"

    def _pid(self, resource: Resource) -> int | None:
        if not resource.cloud_id:
            return None
        pid, _, host = resource.cloud_id.partition("@")
        if host != socket.gethostname():
            raise ResourceError(
                f"process {resource.cloud_id} runs on another machine",
                resource_id=resource.id,
                hint=f"run this command on {host}",
            )
        return int(pid)

    def _tree(self, resource: Resource) -> ProcessTree:
        cgroup = resource.spec.get("cgroup")
        return ProcessTree(
            pgid=self._pid(resource),
            tag=f"RUNCTL_JOB_ID={resource.job_id}",
            cgroup=Path(cgroup) if cgroup else None,
        )

    def lookup(self, resource: Resource) -> str | None:
        return "running" if self._tree(resource).members() else None

    def release(self, resource: Resource) -> str:
        tree = self._tree(resource)
        survivors = tree.stop(float(resource.spec.get("grace_period") or DEFAULT_GRACE_S))
        if survivors:
            raise ResourceError(
                f"processes {sorted(survivors)} of job {resource.job_id} did not exit after SIGKILL",
                resource_id=resource.id,
                resource_state="running",
                hint=f"check 'ps -o pid,stat,cmd -p {','.join(map(str, sorted(survivors)))}'",
                retryable=True,
            )
        tree.remove_cgroup()
        return "terminated"

    def is_billable(self, kind: str, state: str) -> bool:
        return state in ("running", "stopping")


def local_lifecycle(ledger: Ledger) -> Lifecycle:
    """The lifecycle of this machine's processes: the one way the local workflows build it."""
    return Lifecycle(ledger, {LocalProvider.name: LocalProvider()})
