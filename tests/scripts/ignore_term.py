"""Ignores SIGTERM and keeps running: runctl must kill it after the grace period."""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.05)
