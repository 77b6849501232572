"""``runctl.Checkpointer``: the helper a training script uses to cooperate with runctl.

    from runctl import Checkpointer

    ckpt = Checkpointer()                  # RUNCTL_CHECKPOINT_DIR, else ./checkpoints
    state = ckpt.load() or {"step": 0}     # the checkpoint to resume from, if any
    for step in range(state["step"], total):
        ...
        stop = ckpt.stop_requested         # read once per step, so a stop is never missed
        if step % 100 == 0 or stop:
            ckpt.save(state, step)
        if stop:
            break                          # runctl records the job as interrupted

* ``latest()`` is the newest complete checkpoint in the job's own directory, else the one runctl
  passed in ``RUNCTL_RESUME_FROM`` (the previous attempt's), else None.
* ``save(obj, step)`` writes ``ckpt-<step>.pt`` with ``torch.save`` when torch is already imported
  by the script, else ``ckpt-<step>.pkl`` with pickle; atomically (temp + fsync + rename), then
  prunes to ``keep_last_n`` (``RUNCTL_KEEP_LAST_N`` if set by runctl).
* ``progress()`` tells runctl's hang watchdog the script is alive (touches
  ``RUNCTL_PROGRESS_FILE``): call it from a long silent phase (a big eval, a slow data load) that
  prints nothing and saves nothing. A no-op where runctl set no such file.
* ``stop_requested`` turns true on SIGTERM or SIGINT (handlers installed on construction, in the
  main thread only): the script saves and exits instead of being killed. A second SIGINT raises
  ``KeyboardInterrupt`` at once.

Stdlib only (torch is used only if the script imported it): importing this costs nothing.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from runctl.core.checkpoints import atomic_write, latest_checkpoint, list_checkpoints, prune


class Checkpointer:
    """Atomic save, keep-last-N, ``latest()`` and ``stop_requested`` for training scripts."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        keep_last_n: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.directory = Path(directory or os.environ.get("RUNCTL_CHECKPOINT_DIR") or "checkpoints")
        self.directory.mkdir(parents=True, exist_ok=True)
        env_keep = os.environ.get("RUNCTL_KEEP_LAST_N")
        self.keep_last_n = keep_last_n or (int(env_keep) if env_keep else None)
        self._stop = threading.Event()
        self.stop_signal: int | None = None
        if handle_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self._stop.is_set():
            raise KeyboardInterrupt
        self.stop_signal = signum
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """True once runctl (or the user) asked the script to stop: save and exit."""
        return self._stop.is_set()

    def latest(self) -> Path | None:
        """The checkpoint to resume from: own newest, else ``RUNCTL_RESUME_FROM``, else None."""
        own = latest_checkpoint(self.directory)
        if own is not None:
            return own.path
        resume = os.environ.get("RUNCTL_RESUME_FROM")
        return Path(resume) if resume and Path(resume).exists() else None

    def load(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Load ``path`` (default: :meth:`latest`); None when there is nothing to resume."""
        target = Path(path) if path is not None else self.latest()
        if target is None:
            return None
        if target.suffix in (".pt", ".pth"):
            import torch  # only for checkpoints torch wrote

            return torch.load(target, map_location="cpu", weights_only=False)
        with target.open("rb") as handle:
            return pickle.load(handle)

    def save(self, obj: Any, step: int) -> Path:
        """Write ``obj`` as the checkpoint of ``step``, atomically; prune old ones."""
        if step < 0:
            raise ValueError("step must be >= 0")
        torch = sys.modules.get("torch")
        if torch is not None:
            path = atomic_write(self.directory / f"ckpt-{step:08d}.pt", lambda f: torch.save(obj, f))
        else:
            path = atomic_write(
                self.directory / f"ckpt-{step:08d}.pkl",
                lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL),
            )
        if self.keep_last_n:
            prune(self.directory, self.keep_last_n)
        return path

    def progress(self) -> None:
        """Say "still making progress" to the agent's hang watchdog (touch ``RUNCTL_PROGRESS_FILE``)."""
        target = os.environ.get("RUNCTL_PROGRESS_FILE")
        if target:
            Path(target).touch()

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints in this directory, oldest first."""
        return [c.path for c in list_checkpoints(self.directory)]
