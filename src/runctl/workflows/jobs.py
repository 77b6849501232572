"""Operations on recorded jobs: cancel one, follow its log.

A local job's log may be rotated (``[local] max_log_size``): :func:`follow_log` notices the
file was replaced and goes on from the start of the new one, so nothing is skipped.

``cancel`` first writes ``cancel_requested`` in the ledger, then signals the job's runctl
process (SIGTERM): that process stops the script gracefully and, seeing the flag, records
``cancelled`` rather than ``interrupted``. A job whose runctl is gone is finished as
``cancelled`` directly and its resources are released.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from runctl.core.errors import NotFoundError, ValidationError
from runctl.core.ledger import Job, Ledger
from runctl.core.shutdown import pid_alive
from runctl.providers.local import local_lifecycle
from runctl.storage.base import Storage


def cancel_job(ledger: Ledger, job_id: str, *, wait: float = 60.0) -> Job:
    """Stop a running job gracefully and record it as ``cancelled``."""
    job = ledger.get_job(job_id)
    if job.is_final:
        raise ValidationError(
            f"job {job.id} already ended ({job.state})", hint="only running jobs can be cancelled"
        )
    if job.provider != "local":
        raise ValidationError(
            f"job {job.id} runs on {job.provider}; cancelling it is not supported yet",
            hint="stop its machine with the provider's commands",
        )
    ledger.update_job(job.id, cancel_requested=True)
    if job.host == socket.gethostname() and job.runner_pid is not None and pid_alive(job.runner_pid):
        os.kill(job.runner_pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while not (job := ledger.get_job(job.id)).is_final and time.monotonic() < deadline:
            if not pid_alive(job.runner_pid):
                break  # it died before it could record an outcome (e.g. not yet supervising)
            time.sleep(0.2)
        if job.is_final or pid_alive(job.runner_pid):
            return job
    local_lifecycle(ledger).cleanup_on_failure(job.id)
    ledger.finish_job(job.id, "cancelled", detail="cancelled; its runctl process was gone")
    return ledger.get_job(job.id)


def follow_log(
    path: Path, *, until: Callable[[], bool], poll: float = 0.25, from_start: bool = True
) -> Iterator[bytes]:
    """Yield the log's bytes as they are written, until ``until()`` is true and all is read."""
    deadline_missing = time.monotonic() + 10
    while not path.exists():
        if until() or time.monotonic() > deadline_missing:
            raise NotFoundError(f"log file {path} does not exist", hint="the job may not have started")
        time.sleep(poll)
    handle = path.open("rb")
    try:
        if not from_start:
            handle.seek(0, os.SEEK_END)
        while True:
            chunk = handle.read(65536)
            if chunk:
                yield chunk
                continue
            if _rotated(path, handle):  # the log reached max_log_size: the rest is in a new file
                handle.close()
                handle = path.open("rb")
                continue
            if until():
                if rest := handle.read():
                    yield rest
                return
            time.sleep(poll)
    finally:
        handle.close()


def _rotated(path: Path, handle: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def follow_remote_log(
    storage: Storage, *, until: Callable[[], bool], poll: float = 2.0, follow: bool = True
) -> Iterator[bytes]:
    """Yield a remote job's log from its storage chunks; with ``follow``, until ``until()``."""
    from runctl.agent.sync import read_log

    last: str | None = None
    while True:
        done = not follow or until()  # decided before reading, so the last chunk is never missed
        data, last = read_log(storage, after=last)
        if data:
            yield data
        if done:
            return
        time.sleep(poll)


def remote_job_ended(storage: Storage, job: Job) -> bool:
    """Whether the agent reported a final state for the job's current attempt."""
    from runctl.agent.sync import STATUS_KEY
    from runctl.workflows.remote import AGENT_STATES_FINAL

    status = storage.read_json(STATUS_KEY) or {}
    return status.get("attempt") == job.attempt and status.get("state") in AGENT_STATES_FINAL
