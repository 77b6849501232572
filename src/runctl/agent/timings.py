"""Where a remote job's start-up time goes, measured on the machine and reported in
``status.json`` under ``timings`` (seconds), so that a slow start says which part was slow:

* ``bootstrap_s`` — the start script: finding a Python, fetching and checking the shipped
  agent, installing it (from the ``bootstrap.events`` lines the script writes beside it);
* ``setup_s`` — the user's ``--setup`` (absent when there is none, or it already ran on this
  machine);
* ``deps_s`` — the automatic environment (``--deps auto``: the project's requirements);
* ``first_output_s`` — from the script's start to its first output (its first step, for a
  script that reports its steps).

The controller turns each into a ledger event with its duration (``job.bootstrap``,
``job.setup``, ``job.first_output``), which ``runctl jobs show`` lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

BOOTSTRAP_EVENTS = "bootstrap.events"


def bootstrap_seconds(directory: Path) -> float | None:
    """How long the start script took, from its ``bootstrap.start`` to ``bootstrap.done``."""
    try:
        lines = (directory / BOOTSTRAP_EVENTS).read_text().splitlines()
    except OSError:
        return None
    stamps = {}
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0].isdigit():
            stamps[parts[1]] = int(parts[0])  # the last run of the script on this attempt counts
    if "bootstrap.start" in stamps and "bootstrap.done" in stamps:
        return float(max(0, stamps["bootstrap.done"] - stamps["bootstrap.start"]))
    return None


class FirstOutput:
    """A tee target that notes when the script first writes, then passes everything on
    (``started`` is reset when the script starts)."""

    def __init__(self, target: BinaryIO, on_first: Callable[[float], None]) -> None:
        self.target = target
        self.on_first: Callable[[float], None] | None = on_first
        self.started = time.monotonic()

    def write(self, data: bytes) -> int:
        if self.on_first is not None and data:
            on_first, self.on_first = self.on_first, None
            on_first(time.monotonic() - self.started)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()
