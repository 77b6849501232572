"""A stdlib-only training loop for the dashboard's browser tests: prints a hostile log line
(markup that would run script if a page inserted it unescaped), then steps until stopped, saving
a checkpoint every 20 steps and when asked to stop (SIGTERM/SIGINT through Checkpointer).

Prints "ready step=N" once its handlers are installed and "stopped at step N" when stopped.
"""

import sys
import time

from runctl import Checkpointer

print('<script>window.pwned = "log"</script><img src=x onerror="window.pwned = \'img\'">', flush=True)
ckpt = Checkpointer()
state = ckpt.load() or {"step": 0}
step = state["step"]
print(f"ready step={step}", flush=True)
while True:
    time.sleep(0.05)
    step += 1
    stop = ckpt.stop_requested
    if step % 20 == 0 or stop:
        ckpt.save({"step": step}, step)
    if stop:
        print(f"stopped at step {step}", flush=True)
        sys.exit(0)
