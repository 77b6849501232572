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
* A script run by another interpreter than the agent's still imports ``runctl``'s in-script
  helper (:func:`with_helper`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from runctl.core.errors import ResourceError

SETUP_TAIL_LINES = 5


def run_setup(
    command: str,
    *,
    cwd: Path,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str],
    once: bool = True,
    log_hint: str | None = None,
) -> float | None:
    """Run ``command`` unless this machine already ran it (``once``); its duration in seconds,
    or ``None`` when it was skipped. Raises :class:`ResourceError` when it fails or runs out of
    time."""
    marker = Path.home() / ".runctl" / "setup" / hashlib.sha256(command.encode()).hexdigest()[:20]
    if once and marker.exists():
        return None
    took = run_step(
        command, what="setup", cwd=cwd, log_path=log_path, timeout=timeout, env=env, log_hint=log_hint
    )
    if once:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(command)
    return took


def run_step(
    command: str,
    *,
    what: str,
    cwd: Path,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str],
    log_hint: str | None = None,
) -> float:
    """Run one ``sh -c`` preparation step with its output in the job log; its duration."""
    started = time.monotonic()
    with log_path.open("ab") as log:
        log.write(f"runctl: {what}: {command}\n".encode())
        log.flush()
        process = subprocess.Popen(
            ["sh", "-c", command], cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise ResourceError(
                f"{what} ran past [remote] setup_timeout ({timeout:g}s): {_tail(log_path)}",
                operation=what,
                hint="raise [remote] setup_timeout, or prepare the image and pass --python",
            ) from None
    if code != 0:
        raise ResourceError(
            f"{what} exited with {code}: {_tail(log_path)}",
            operation=what,
            hint=log_hint or "the job log has its whole output: runctl logs JOB",
        )
    return time.monotonic() - started


def with_helper(env: dict[str, str], python: str | None) -> dict[str, str]:
    """``env`` for a script run by another interpreter than the agent's (``--python``, the
    project's virtualenv): ``from runctl import Checkpointer`` still works, through a directory
    holding only the ``runctl`` package appended to ``PYTHONPATH`` (last: a runctl the user
    installed wins; the agent's other packages stay out of the user's way)."""
    if python is None:
        return env
    helper = Path.home() / ".runctl" / "helper"
    link = helper / "runctl"
    if not link.exists():
        helper.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            link.symlink_to(Path(__file__).resolve().parent.parent)  # the runctl package
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**env, "PYTHONPATH": os.pathsep.join([*paths, str(helper)])}


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()[-SETUP_TAIL_LINES:]
    return " | ".join(line.strip() for line in lines)[:500]
