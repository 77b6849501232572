"""A file made unwritable for real, for tests of read-only ledgers: permission bits for a
normal user, the immutable attribute for root (whom permission bits do not stop)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` cannot be written inside the block; skips the test where that cannot be done."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    chattr = shutil.which("chattr") if os.geteuid() == 0 else None
    immutable = (
        chattr is not None and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
    )
    try:
        if os.access(path, os.W_OK):
            pytest.skip(f"cannot make {path} read-only here (root, and no chattr +i on this file system)")
        yield
    finally:
        if immutable:
            subprocess.run([str(chattr), "-i", str(path)], check=True)
        path.chmod(mode)
