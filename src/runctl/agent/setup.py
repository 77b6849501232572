"""The user's environment on the machine, before the script runs: ``--python`` and ``--setup``.

* ``--python PATH`` names the script's interpreter: one already on the image (the PyTorch DLAMI's
  virtualenv, a conda env). Without it a ``.py`` script runs with the agent's interpreter, or
  ``uv run`` for a PEP 723 script when uv is there (:mod:`runctl.agent.script`).
* ``--setup "CMD"`` runs once per machine before the script (``sh -c``, in the code directory,
  with the job's environment): a marker under ``~/.runctl/setup/`` keyed by the command's hash
  makes a restart or a resumed attempt on the same machine skip it. Its output goes into the
  attempt's log (``runctl logs`` shows it before the script's). A non-zero exit or more than
  ``[remote] setup_timeout`` ends the attempt ``failed_setup``; the detail carries the last lines
  of its output.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from runctl.core.errors import ResourceError

SETUP_TAIL_LINES = 5


def run_setup(
    command: str, *, cwd: Path, log_path: Path, timeout: float, env: Mapping[str, str]
) -> float | None:
    """Run ``command`` unless this machine already ran it; its duration in seconds, or ``None``
    when it was skipped. Raises :class:`ResourceError` when it fails or runs out of time."""
    marker = Path.home() / ".runctl" / "setup" / hashlib.sha256(command.encode()).hexdigest()[:20]
    if marker.exists():
        return None
    started = time.monotonic()
    with log_path.open("ab") as log:
        log.write(f"runctl: setup: {command}\n".encode())
        log.flush()
        process = subprocess.Popen(
            ["sh", "-c", command], cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            raise ResourceError(
                f"setup ran past [remote] setup_timeout ({timeout:g}s): {_tail(log_path)}",
                operation="setup",
                hint="raise [remote] setup_timeout, or prepare the image and pass --python",
            ) from None
    if code != 0:
        raise ResourceError(
            f"setup exited with {code}: {_tail(log_path)}",
            operation="setup",
            hint="the job log has the setup's whole output: runctl logs JOB",
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(command)
    return time.monotonic() - started


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()[-SETUP_TAIL_LINES:]
    return " | ".join(line.strip() for line in lines)[:500]
