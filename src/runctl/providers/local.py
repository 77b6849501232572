"""The local provider: this machine. Its one resource kind is the job's process group.

Tracking the training process as a ledger resource (cloud id ``<pid>@<host>``) gives local
jobs the same lifecycle and cost path as cloud ones: a ``runctl local`` killed with SIGKILL
leaves its child training; ``release`` finds it (only if it still carries the job's
``RUNCTL_JOB_ID``, so a reused pid is never touched) and stops its group. The rate is
``[local] rate_usd_per_hour`` (0 by default: your own machine).
"""

from __future__ import annotations

import os
import signal
import socket
import time

from runctl.core.errors import ResourceError
from runctl.core.ledger import Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.shutdown import pid_alive
from runctl.providers.base import ResourceProvider

KIND = "process"


def process_cloud_id(pid: int) -> str:
    return f"{pid}@{socket.gethostname()}"


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

    def _is_jobs_process(self, pid: int, job_id: str | None) -> bool:
        if not pid_alive(pid):
            return False
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                return f"RUNCTL_JOB_ID={job_id}".encode() in handle.read().split(b"\0")
        except OSError:
            return False

    def lookup(self, resource: Resource) -> str | None:
        pid = self._pid(resource)
        return "running" if pid and self._is_jobs_process(pid, resource.job_id) else None

    def release(self, resource: Resource, *, grace: float = 10.0) -> str:
        pid = self._pid(resource)
        if pid and self._is_jobs_process(pid, resource.job_id):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
                time.sleep(0.2)
            if pid_alive(pid):
                raise ResourceError(
                    f"process group {pid} did not exit after SIGKILL",
                    resource_id=resource.id,
                    resource_state="running",
                    hint=f"check 'ps -g {pid}'",
                    retryable=True,
                )
        return "terminated"

    def is_billable(self, kind: str, state: str) -> bool:
        return state == "running"


def local_lifecycle(ledger: Ledger) -> Lifecycle:
    """The lifecycle of this machine's processes: the one way the local workflows build it."""
    return Lifecycle(ledger, {LocalProvider.name: LocalProvider()})
