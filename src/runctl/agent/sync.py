"""What the agent keeps in the job's storage, and the layout the controller reads back.

Layout under the job's root (``<storage>/jobs/<job id>/``)::

    code.tar.gz                      the project, uploaded by the controller (--sync-code)
    status.json                      the heartbeat: state, attempt, exit code, last checkpoint,
                                     utilisation, times; rewritten every few seconds
    control/stop.json                a stop request from the controller (a budget reached):
                                     {"attempt", "reason", "requested_at"}; read every heartbeat
    control/env.json                 the job's variables and secrets (--env, --secret), read by
                                     the agent at start, deleted when the job ends
    agent/manifest-<N>.txt           what attempt N's start script installs (agent shipping)
    logs/attempt-<N>/<seq>.log       the script's output, in chunks (S3 cannot append)
    checkpoints/                     published checkpoints (manifest written last)
    outputs/                         files the script left in RUNCTL_OUTPUT_DIR

:class:`JobSync` is driven by the agent's supervision loop (``tick`` every heartbeat interval)
and once more at the end (``final``). Each upload failure is logged and retried at the next
tick; the final sync raises, so the agent can record that the upload failed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.agent.watchdog import gpu_utilisation
from runctl.core import checkpoints
from runctl.core.errors import RunctlError
from runctl.storage.base import Storage

STATUS_KEY = "status.json"
STOP_KEY = "control/stop.json"
ENV_KEY = "control/env.json"
NOTIFY_KEY = "control/notify.json"  # the job's apprise URLs (secrets), from the controller
CODE_KEY = "code.tar.gz"
CHECKPOINTS_PREFIX = "checkpoints"
OUTPUTS_PREFIX = "outputs"

log = logging.getLogger("runctl.agent.sync")


def log_prefix(attempt: int) -> str:
    return f"logs/attempt-{attempt}/"


def read_log(storage: Storage, *, after: str | None = None) -> tuple[bytes, str | None]:
    """Log bytes of every attempt in order, from the chunk after ``after``; and the last key read."""
    data = bytearray()
    last = after
    chunks = sorted(
        (o.key for o in storage.list("logs/") if o.key.endswith(".log")),
        key=lambda key: (int(key.split("/")[1].removeprefix("attempt-")), key),
    )
    for key in chunks:
        if after is not None and _chunk_order(key) <= _chunk_order(after):
            continue
        data += storage.get_bytes(key)
        last = key
    return bytes(data), last


def _chunk_order(key: str) -> tuple[int, str]:
    return int(key.split("/")[1].removeprefix("attempt-")), key


def request_stop(storage: Storage, *, attempt: int, reason: str) -> None:
    """The controller's side: ask the agent running ``attempt`` to stop the job gracefully."""
    storage.write_json(STOP_KEY, {"attempt": attempt, "reason": reason, "requested_at": time.time()})


def utilisation() -> dict[str, float]:
    """CPU load per core and, where GPUs can be read (NVML, nvidia-smi), mean GPU utilisation (percent)."""
    found: dict[str, float] = {"load_per_cpu": round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)}
    gpus = gpu_utilisation()  # informational: no figure this heartbeat is never fatal
    if gpus:
        found["gpu_percent"] = sum(gpus) / len(gpus)
    return found


@dataclass
class JobSync:
    """Mirrors a running job's checkpoints, log and status into its storage."""

    storage: Storage
    checkpoint_dir: Path
    log_path: Path
    status: dict[str, Any]
    keep_last_n: int | None = None
    _published: dict[str, tuple[float, int]] = field(default_factory=dict)
    _log_offset: int = 0
    _log_seq: int = 0

    def write_status(self, **changes: Any) -> None:
        self.status.update(changes, updated_at=time.time())
        self.storage.write_json(STATUS_KEY, self.status)

    def push_checkpoints(self) -> None:
        """Publish every complete local checkpoint that is new or changed since the last push."""
        for found in checkpoints.list_checkpoints(self.checkpoint_dir):
            signature = (found.mtime, found.size)
            if self._published.get(found.path.name) == signature:
                continue
            record = self.storage.publish_checkpoint(found.path, CHECKPOINTS_PREFIX, step=found.step)
            self._published[found.path.name] = signature
            self.status["last_checkpoint"] = {"name": record.name, "step": record.step}
            log.info("checkpoint %s (step %s) uploaded", record.name, record.step)
        if self.keep_last_n:
            self.storage.prune_checkpoints(CHECKPOINTS_PREFIX, self.keep_last_n)

    def push_log(self) -> None:
        """Upload what the log gained since the last push as one chunk."""
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as handle:
            handle.seek(self._log_offset)
            chunk = handle.read()
        if not chunk:
            return
        key = f"{log_prefix(self.status['attempt'])}{self._log_seq:06d}.log"
        self.storage.put_bytes(key, chunk, content_type="text/plain")
        self._log_offset += len(chunk)
        self._log_seq += 1

    def tick(self) -> None:
        """One heartbeat: checkpoints, log, status. Failures wait for the next tick."""
        for step in (self.push_checkpoints, self.push_log):
            try:
                step()
            except (RunctlError, OSError) as exc:
                log.warning("sync to storage failed (will retry): %s", exc)
        try:
            self.write_status(utilisation=utilisation())
        except (RunctlError, OSError) as exc:
            log.warning("heartbeat to storage failed (will retry): %s", exc)

    def stop_request(self) -> str | None:
        """The reason of a stop the controller asked for this attempt, or None (also when storage
        cannot be read: the next heartbeat looks again)."""
        try:
            request = self.storage.read_json(STOP_KEY)
        except (RunctlError, OSError) as exc:
            log.warning("could not read the stop request from storage (will retry): %s", exc)
            return None
        if not isinstance(request, dict) or request.get("attempt") not in (None, self.status["attempt"]):
            return None
        return str(request.get("reason") or "stop requested by the controller")

    def final(self, output_dir: Path | None = None, **status: Any) -> None:
        """Everything, once more, then the final status. Raises if storage refuses."""
        self.push_checkpoints()
        self.push_log()
        if output_dir is not None and output_dir.is_dir():
            pairs = [
                (p, f"{OUTPUTS_PREFIX}/{p.relative_to(output_dir).as_posix()}")
                for p in sorted(output_dir.rglob("*"))
                if p.is_file()
            ]
            if pairs:
                self.storage.upload_files(pairs)
        self.write_status(utilisation=utilisation(), **status)
