"""How a training script is started and how its end is named, the same under ``runctl local``
and under the agent on a remote machine.

* **Command** (:func:`command_for`): ``*.py`` runs with the current interpreter (``[local] python``
  overrides), or with ``uv run`` when it carries PEP 723 inline metadata and ``uv`` is installed
  (on ``PATH``, or beside the agent's interpreter);
  anything else must be executable and runs directly (by absolute path, never looked up on PATH).
* **Outcome** (:func:`classify`): exit 0 → ``succeeded``; non-zero → ``failed`` (its code passes
  through); a limit that stopped it (a budget) → ``cancelled`` with exit code 79; a cancel →
  ``cancelled``; max duration → ``timed_out`` (124); a signal runctl received →
  ``interrupted`` (128 + signal). The agent adds its own rules on top (a spot notice or the OS's
  SIGTERM means ``preempted``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runctl.core.errors import ExitCode, NotFoundError, ValidationError
from runctl.core.shutdown import ChildOutcome

if TYPE_CHECKING:
    from runctl.core.config import Config

_PEP723_RE = re.compile(r"(?m)^# /// script\s*$")


def command_for(script: Path, config: Config) -> list[str]:
    """The argv that runs ``script`` (see the module docstring)."""
    if not script.exists():
        raise NotFoundError(f"script {script} does not exist", hint="check the path")
    if not script.is_file():
        raise ValidationError(f"{script} is not a file", hint="give the path of a script")
    if not os.access(script, os.R_OK):
        raise ValidationError(f"script {script} is not readable", hint=f"chmod u+r {script}")
    if script.suffix == ".py":
        uv = find_uv() if config.local.use_uv else None
        if uv is not None and has_inline_metadata(script):
            return [uv, "run", "--script", str(script)]
        return [config.local.python or sys.executable, str(script)]
    if not os.access(script, os.X_OK):
        raise ValidationError(
            f"script {script} is not executable",
            hint=f"chmod +x {script}, or give a .py file (run with Python)",
        )
    # absolute: a bare relative name ("train.sh") would otherwise be looked up on PATH
    return [str(script.absolute())]


def find_uv() -> str | None:
    """uv on ``PATH``, else the one installed beside this interpreter (the shipped agent's)."""
    found = shutil.which("uv")
    if found:
        return found
    sibling = Path(sys.executable).parent / "uv"
    return str(sibling) if os.access(sibling, os.X_OK) else None


def has_inline_metadata(script: Path) -> bool:
    with script.open(encoding="utf-8", errors="replace") as handle:
        return bool(_PEP723_RE.search(handle.read(65536)))


def classify(
    outcome: ChildOutcome, *, cancelled: bool, stopped_for: str | None = None
) -> tuple[str, int, str | None]:
    """(final state, exit code for runctl, detail) from how the child ended; ``stopped_for`` is
    the limit that stopped it (a budget), if one did."""
    code = outcome.returncode if outcome.returncode >= 0 else 128 - outcome.returncode
    detail = outcome.exit_detail
    if stopped_for is not None:
        return "cancelled", int(ExitCode.BUDGET), f"stopped: {stopped_for}; {detail}"
    if cancelled:
        return "cancelled", code or int(ExitCode.SIGTERM), f"cancelled by the user; {detail}"
    if outcome.timed_out:
        return "timed_out", int(ExitCode.TIMEOUT), f"max duration reached; {detail}"
    if outcome.signal_received is not None:
        name = signal.Signals(outcome.signal_received).name
        return "interrupted", 128 + outcome.signal_received, f"runctl received {name}; {detail}"
    if outcome.returncode == 0:
        return "succeeded", 0, None
    return "failed", code, detail
