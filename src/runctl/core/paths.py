"""Where runctl keeps its state and looks for its user config.

* State (ledger, job logs, default checkpoints): ``$RUNCTL_STATE_DIR``, else
  ``$XDG_STATE_HOME/runctl``, else ``~/.local/state/runctl``.
* User config: ``$RUNCTL_CONFIG_HOME/config.toml``, else ``$XDG_CONFIG_HOME/runctl/config.toml``,
  else ``~/.config/runctl/config.toml``.

The state directory is created on first use with mode 0700 (it holds job logs); a directory
that cannot be created or written is a :class:`StateDirError` naming the path and the variable
that moves it.

What runctl creates for itself is private, whatever the umask: directories 0700 (the state
directory, logs, default checkpoint directories, and any missing parent it has to make), files
0600 (the ledger, job logs, the metrics textfile, the price cache), set explicitly after
creation rather than left to the umask (:func:`make_private_dirs`, :func:`create_private_file`,
:func:`write_private`). Existing directories are left as they are, but a state directory that
group or others can read gets one warning per process: it holds the ledger and job logs. The
training script's own files are not runctl's: it keeps the user's umask.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from runctl.core.errors import StateDirError

log = logging.getLogger("runctl.paths")
STATE_DIR_ENV = "RUNCTL_STATE_DIR"
_warned_open: set[Path] = set()
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
        make_private_dirs(path)
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
    """The state directory, created and checked writable (and a warning if others can read it)."""
    path = ensure_dir(state_dir(), what="state directory", env_hint=STATE_DIR_ENV)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 and path not in _warned_open:
        _warned_open.add(path)
        log.warning(
            "the state directory %s can be read by %s (mode %o): it holds the ledger and job logs; "
            "make it private with: chmod 700 %s",
            path,
            "group and others" if mode & 0o070 and mode & 0o007 else "others" if mode & 0o007 else "group",
            mode,
            path,
        )
    return path


def make_private_dirs(path: Path) -> Path:
    """Create ``path`` and its missing parents, each exactly 0700; existing ones are untouched."""
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by another process meanwhile: theirs
        os.chmod(directory, 0o700)  # the umask may have taken bits away: make it exact
    return path


def create_private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 unless it exists (a log runctl appends to later)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (temp file + rename); the file is 0600."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


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
