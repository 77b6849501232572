"""Where runctl keeps its state and looks for its user config.

* State (ledger, job logs, default checkpoints): ``$RUNCTL_STATE_DIR``, else
  ``$XDG_STATE_HOME/runctl``, else ``~/.local/state/runctl``.
* User config: ``$RUNCTL_CONFIG_HOME/config.toml``, else ``$XDG_CONFIG_HOME/runctl/config.toml``,
  else ``~/.config/runctl/config.toml``.

The state directory is created on first use with mode 0700 (it holds job logs); a directory
that cannot be created or written is a :class:`StateDirError` naming the path and the variable
that moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

from runctl.core.errors import StateDirError

STATE_DIR_ENV = "RUNCTL_STATE_DIR"
CONFIG_HOME_ENV = "RUNCTL_CONFIG_HOME"
PROJECT_CONFIG_NAME = ".runctl.toml"


def state_dir() -> Path:
    """The state directory (not created)."""
    if env := os.environ.get(STATE_DIR_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "runctl"


def ensure_dir(path: Path, *, what: str, env_hint: str | None = None) -> Path:
    """Create ``path`` (0700) if needed and check it is a writable directory."""
    move = f", or set {env_hint} to another directory" if env_hint else ""
    if path.exists() and not path.is_dir():
        raise StateDirError(
            f"{what} {path} exists but is a file",
            hint=f"remove or rename that file{move}",
            operation="create directory",
        )
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateDirError(
            f"cannot create {what} {path}: {exc.strerror}",
            hint=f"fix the permissions of {path.parent}{move}",
            operation="create directory",
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(
            f"{what} {path} is not writable",
            hint=f"fix its permissions (chmod u+rwx {path}){move}",
            operation="create directory",
        )
    return path


def ensure_state_dir() -> Path:
    """The state directory, created and checked writable."""
    return ensure_dir(state_dir(), what="state directory", env_hint=STATE_DIR_ENV)


def user_config_path() -> Path:
    """The user-wide config file (may not exist)."""
    if env := os.environ.get(CONFIG_HOME_ENV):
        return Path(env).expanduser() / "config.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "runctl" / "config.toml"


def find_project_config(start: Path | None = None) -> Path | None:
    """The nearest ``.runctl.toml`` in ``start`` or one of its parents."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None
