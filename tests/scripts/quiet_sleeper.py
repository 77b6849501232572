"""Prints one line, then sleeps without printing: it outlives a runctl killed with SIGKILL
(a script that keeps printing would die of a broken pipe instead, hiding the leak)."""

import time

print("ready", flush=True)
while True:
    time.sleep(0.05)
