"""Saves step 10 completely, then dies with SIGKILL half-way through writing step 20 with
runctl's atomic_write: the directory must still say step 10 is the latest."""

import os
import signal
import sys
from pathlib import Path

from runctl.core.checkpoints import atomic_write

directory = Path(sys.argv[1])
atomic_write(directory / "ckpt-00000010.pkl", lambda f: f.write(b"complete" * 1000))


def half_then_die(handle):
    handle.write(b"partial" * 1000)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)


atomic_write(directory / "ckpt-00000020.pkl", half_then_die)
