"""Files that appear whole or not at all: a hidden temp name next to the target, then rename.

Temp names are ``.<name>.runctl-<random>.partial``: hidden, and ending in ``.partial``, so
neither :mod:`runctl.core.checkpoints` nor a storage listing ever takes one for a finished file,
and two writers (threads or processes) never share one. A download interrupted by anything short
of a power cut leaves at most such a temp file, which :func:`temp_path` callers remove on error.
Downloads are not fsynced (a power cut may lose the last file; a rerun fetches it again);
checkpoints a script writes locally are (:func:`runctl.core.checkpoints.atomic_write`).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_TEMP_RE = re.compile(r"^\..+\.runctl-[0-9a-f]{8}\.partial$")


def temp_path(path: Path) -> Path:
    """A fresh hidden temp name in ``path``'s directory."""
    return path.with_name(f".{path.name}.runctl-{uuid.uuid4().hex[:8]}.partial")


def is_temp_name(name: str) -> bool:
    return bool(_TEMP_RE.match(name))


def publish(temp: Path, path: Path, *, mtime: float | None = None) -> Path:
    """Rename the finished ``temp`` onto ``path`` (setting its mtime first, if given)."""
    if mtime is not None:
        os.utime(temp, (mtime, mtime))
    os.replace(temp, path)
    return path


def prepare_parent(path: Path) -> None:
    """Create ``path``'s directory; refuse when ``path`` is a directory or a parent is a file."""
    from runctl.core.errors import ValidationError

    if path.is_dir():
        raise ValidationError(
            f"destination {path} is a directory, where a file must go",
            hint="give a file path, or remove that directory",
        )
    if path.parent.is_dir():
        return
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ValidationError(
                f"destination {path} cannot be created: {parent} is a file",
                hint="give a destination inside a directory",
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create {path.parent}: {exc.strerror}", hint="check the path") from None
