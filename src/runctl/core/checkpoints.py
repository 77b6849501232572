"""Checkpoints on disk: find them, order them, prune them, write them atomically.

A checkpoint is a file or directory inside a job's checkpoint directory. Its *step* is the last
integer in its name (``ckpt-00001200.pt`` → 1200, ``epoch_3`` → 3); names without a number sort
by modification time, before numbered ones. Names starting with ``.`` or ending in ``.tmp``,
``.partial`` or ``.incomplete`` are work in progress and never count: this is what makes
"latest" safe, because :func:`atomic_write` writes to a hidden temp name, fsyncs, and renames
into place only when the bytes are on disk. A script that writes its own files directly may
still leave a half-written file under a final name; only the atomic path (``Checkpointer.save``)
guarantees a half-written file is never "latest".

This module is stdlib-only: training scripts import it through :class:`runctl.Checkpointer`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_IN_PROGRESS_SUFFIXES = (".tmp", ".partial", ".incomplete")
_STEP_RE = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class CheckpointInfo:
    """One complete checkpoint."""

    path: Path
    step: int | None
    size: int
    mtime: float

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "step": self.step, "size": self.size, "mtime": self.mtime}


def step_of(name: str) -> int | None:
    """The step number a checkpoint's name carries, if any."""
    match = _STEP_RE.search(Path(name).stem if "." in name else name)
    return int(match.group(1)) if match else None


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def is_complete_name(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(_IN_PROGRESS_SUFFIXES)


def list_checkpoints(directory: Path) -> list[CheckpointInfo]:
    """Complete checkpoints in ``directory``, oldest first (by step, then time)."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        if not is_complete_name(entry.name):
            continue
        try:
            found.append(CheckpointInfo(entry, step_of(entry.name), _size(entry), entry.stat().st_mtime))
        except FileNotFoundError:  # removed while we looked (a concurrent prune)
            continue
    found.sort(key=lambda c: (c.step is not None, c.step or 0, c.mtime))
    return found


def latest_checkpoint(directory: Path) -> CheckpointInfo | None:
    """The newest complete checkpoint, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def prune(directory: Path, keep_last_n: int, *, dry_run: bool = False) -> list[CheckpointInfo]:
    """Remove all but the newest ``keep_last_n`` complete checkpoints; returns what went.

    Only names that carry a step are rotated: ``best.pt`` or a ``config.json`` the script keeps
    beside its checkpoints is never deleted by a rotation.
    """
    if keep_last_n < 1:
        raise ValueError("keep_last_n must be at least 1 (the latest checkpoint is never pruned)")
    doomed = [c for c in list_checkpoints(directory) if c.step is not None][:-keep_last_n]
    if not dry_run:
        for checkpoint in doomed:
            if checkpoint.path.is_dir():
                shutil.rmtree(checkpoint.path, ignore_errors=True)
            else:
                checkpoint.path.unlink(missing_ok=True)
    return doomed


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` via a hidden temp file, fsync it, rename it in place, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
