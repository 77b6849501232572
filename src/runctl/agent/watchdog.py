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


_probe: GpuProbe | None = None  # one per process: NVML is initialised once


def gpu_utilisation() -> list[float] | None:
    """Per-GPU utilisation (NVML, else nvidia-smi), also exported as the
    ``runctl_gpu_utilisation_percent`` gauge; None without a reading."""
    global _probe
    _probe = _probe or GpuProbe()
    gpus = _probe.read()
    if gpus is not None:
        from runctl.core import metrics

        for index, percent in enumerate(gpus):
            metrics.GPU_UTILISATION.labels(gpu=str(index)).set(percent)
    return gpus


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
    """Decides, each heartbeat, whether the script has been without progress for ``timeout``.

    Progress is dated by the files themselves (their modification time), not by when a
    heartbeat noticed it: a hang is declared ``timeout`` after the last line, at the first
    heartbeat past it, so within ``timeout`` + one heartbeat.
    """

    timeout: float
    log_path: Path
    checkpoint_dir: Path
    progress_file: Path
    gpu_util: float = 5.0  # percent: at or above it the GPU counts as progress
    gpu: Callable[[], list[float] | None] = gpu_utilisation
    clock: Callable[[], float] = time.time  # wall clock: the files' times are
    last_progress: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_progress = self.clock()

    def _newest_file_time(self) -> float:
        """The latest modification of the log, a checkpoint or the progress file."""
        checkpoints = self.checkpoint_dir.iterdir() if self.checkpoint_dir.is_dir() else iter(())
        return max(_mtime(self.log_path), _mtime(self.progress_file), *(_mtime(p) for p in checkpoints))

    def check(self) -> str | None:
        """None while the script makes progress; else why it is hung."""
        now = self.clock()
        self.last_progress = max(self.last_progress, self._newest_file_time())
        gpus = self.gpu()
        if gpus is not None and max(gpus, default=0.0) >= self.gpu_util:
            self.last_progress = now
        idle = now - self.last_progress
        if idle < self.timeout:
            return None
        gpu = "" if gpus is None else f", GPU below {self.gpu_util:g}% ({max(gpus, default=0.0):g}%)"
        return (
            f"hung: no progress for {idle:.1f}s (hang_timeout {duration(self.timeout)}: "
            f"no log line, checkpoint or progress heartbeat{gpu})"
        )


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
