"""A training-script stand-in for the shutdown benchmarks (run by them, not by run.py).

    python save_on_sigterm.py SIZE_MIB READY_FILE

Holds SIZE_MIB MiB of state in memory, writes READY_FILE once its SIGTERM handler is in place,
and on SIGTERM (or SIGINT) saves the state with ``runctl.Checkpointer`` (atomic: temp file,
fsync, rename; into ``RUNCTL_CHECKPOINT_DIR``) as step 1 and exits 0. The same file runs under
``runctl local``, under ``runctl agent run`` and directly with python, so the work is identical.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from runctl import Checkpointer


def main() -> None:
    size_mib, ready = int(sys.argv[1]), Path(sys.argv[2])
    ckpt = Checkpointer()
    state = {"step": 1, "weights": os.urandom(1 << 20) * size_mib}
    ready.write_text(str(os.getpid()))
    while not ckpt.stop_requested:
        time.sleep(0.01)
    ckpt.save(state, step=1)


if __name__ == "__main__":
    main()
