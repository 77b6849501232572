"""A stdlib-only training loop that cooperates with runctl through Checkpointer: resumes from
the latest checkpoint, saves every SAVE_EVERY steps and when asked to stop, then exits 0.

argv: STEPS [SAVE_EVERY [SLEEP]]. Prints "ready step=N" once its handlers are installed,
"step=N" every 10 steps, "stopped at step N by SIGNAL" when stopped, "done step=N" at the end.
"""

import signal
import sys
import time

from runctl import Checkpointer

steps = int(sys.argv[1])
save_every = int(sys.argv[2]) if len(sys.argv) > 2 else 10
sleep = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01

ckpt = Checkpointer()
state = ckpt.load() or {"step": 0}
if state["step"]:
    print(f"resumed from step {state['step']}", flush=True)
step = state["step"]
print(f"ready step={step}", flush=True)
while step < steps:
    time.sleep(sleep)
    step += 1
    if step % 10 == 0:
        print(f"step={step}", flush=True)
    stop = ckpt.stop_requested  # read once: a signal between two reads would skip the save
    if step % save_every == 0 or stop:
        ckpt.save({"step": step}, step)
    if stop:
        print(f"stopped at step {step} by {signal.Signals(ckpt.stop_signal).name}", flush=True)
        sys.exit(0)
ckpt.save({"step": step}, step)
print(f"done step={step}", flush=True)
