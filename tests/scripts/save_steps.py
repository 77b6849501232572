"""Saves a checkpoint (via runctl.Checkpointer) at each step given in argv[1] (comma-separated),
then exits with argv[2] (default 0). Checkpoints hold {"step": N}."""

import sys

from runctl import Checkpointer

ckpt = Checkpointer()
resumed = ckpt.load()
if resumed is not None:
    print(f"resumed from step {resumed['step']}", flush=True)
for step in (int(s) for s in sys.argv[1].split(",")):
    print(f"saved {ckpt.save({'step': step}, step).name}", flush=True)
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
