"""The agent's hang watchdog: a script that makes no progress is stopped, on the machine itself.

The controller may be gone (a laptop closed, ``--no-wait``): the agent alone decides, on its
heartbeat (every ``--heartbeat``, 5 s by default: that is the poll interval, so a hang is seen
within ``hang_timeout`` plus one heartbeat).

*Progress* is any of:

* a new line in the script's log (the log file grew);
* a new or changed checkpoint in ``RUNCTL_CHECKPOINT_DIR``;
* a heartbeat the script sends: ``Checkpointer.progress()`` touches ``RUNCTL_PROGRESS_FILE``
  (any process may touch it: a dataloader worker, a shell loop);
* where GPUs exist, GPU utilisation at or above ``hang_gpu_util`` percent (the busiest GPU): a
  long silent CUDA step is not a hang. A GPU below it for the whole window, with none of the
  above, is (an NCCL deadlock spins at 0 %).

GPU utilisation comes from NVML (``nvidia-ml-py``, imported lazily, the ``runctl[gpu]`` extra)
and, without it, from ``nvidia-smi`` on ``PATH`` — the tool every GPU image has, and what the
tests fake: a fake ``nvidia-smi`` is a two-line shell script the simulated machine finds on its
``PATH``, whereas a fake NVML would be a shared library to build and preload. Without either
the other signals decide alone.

A hung script gets SIGTERM, the grace period, then SIGKILL (the agent's
:class:`~runctl.core.shutdown.Supervisor`), and the attempt ends ``hung``; the controller's
recovery policy (``max_hang_restarts``) decides whether it restarts from the last checkpoint.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.core.units import duration

log = logging.getLogger("runctl.agent.watchdog")

#: The run-contract variable naming the file a script touches to say it is alive.
PROGRESS_ENV = "RUNCTL_PROGRESS_FILE"


class GpuProbe:
    """GPU utilisation in percent, one figure per GPU; None where no GPU can be read."""

    def __init__(self) -> None:
        self._nvml: Any = None  # the pynvml module, once initialised
        self._handles: list[Any] = []
        try:
            pynvml = importlib.import_module("pynvml")  # nvidia-ml-py: optional, GPU machines only

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except Exception:  # no module, no driver, no GPU: fall back to nvidia-smi
            self._nvml = None

    def read(self) -> list[float] | None:
        if self._nvml is not None:
            try:
                return [float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._handles]
            except Exception as exc:  # a driver hiccup: no figure this time
                log.debug("NVML read failed: %s", exc)
                return None
        return nvidia_smi_utilisation()


def nvidia_smi_utilisation() -> list[float] | None:
    """Per-GPU utilisation from ``nvidia-smi``, or None (not installed, failed, no GPU)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split()
        return [float(x) for x in out] or None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


@dataclass
class HangWatch:
    """Decides, each heartbeat, whether the script has been without progress for ``timeout``."""

    timeout: float
    log_path: Path
    checkpoint_dir: Path
    progress_file: Path
    gpu_util: float = 5.0  # percent: at or above it the GPU counts as progress
    gpu: Callable[[], list[float] | None] = field(default_factory=lambda: GpuProbe().read)
    clock: Callable[[], float] = time.monotonic
    last_progress: float = field(init=False)
    _seen: tuple[int, float, float] = field(init=False, default=(-1, 0.0, 0.0))

    def __post_init__(self) -> None:
        self.last_progress = self.clock()
        self._seen = self._signature()

    def _signature(self) -> tuple[int, float, float]:
        """(log size, newest checkpoint mtime, progress file mtime): any change is progress."""
        size = _stat(self.log_path, "st_size")
        newest = max(
            (_stat(p, "st_mtime") for p in self.checkpoint_dir.iterdir())
            if self.checkpoint_dir.is_dir()
            else (),
            default=0.0,
        )
        return int(size), newest, _stat(self.progress_file, "st_mtime")

    def check(self) -> str | None:
        """None while the script makes progress; else why it is hung."""
        now = self.clock()
        seen = self._signature()
        gpus = self.gpu()
        if seen != self._seen or (gpus is not None and max(gpus, default=0.0) >= self.gpu_util):
            self._seen, self.last_progress = seen, now
            return None
        idle = now - self.last_progress
        if idle < self.timeout:
            return None
        gpu = "" if gpus is None else f", GPU below {self.gpu_util:g}% ({max(gpus, default=0.0):g}%)"
        return (
            f"hung: no progress for {idle:.1f}s (hang_timeout {duration(self.timeout)}: "
            f"no log line, checkpoint or progress heartbeat{gpu})"
        )


def _stat(path: Path, attr: str) -> float:
    try:
        return float(getattr(os.stat(path), attr))
    except OSError:
        return 0.0
