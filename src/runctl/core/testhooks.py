"""Crash points for the chaos tests: ``crash_point("aws.create.after_call")`` kills this process
with SIGKILL when ``RUNCTL_CRASH_AT`` names that point, simulating a crash at the worst moment.

Off in production: nothing happens unless that variable is set. Each multi-step operation
calls ``crash_point`` between its steps (intent written, API call sent, response received,
ledger updated, …) so a test can prove every step is recoverable by ``resources reconcile``.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RUNCTL_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, as if the machine lost power, if the tests asked for it."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
