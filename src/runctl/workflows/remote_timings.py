"""The start-up timings a remote job's agent reports (:mod:`runctl.agent.timings`), as ledger
events: one per part and attempt, with its duration, so ``runctl jobs show`` and ``runctl
events`` say where the time between submit and the first step went."""

from __future__ import annotations

from typing import Any

from runctl.core.ledger import Job, Ledger
from runctl.core.units import duration

#: status.json ``timings`` key → (event kind, what it measures)
PARTS = {
    "bootstrap_s": ("job.bootstrap", "agent bootstrap (Python, shipped agent, install)"),
    "setup_s": ("job.setup", "environment setup (--setup)"),
    "deps_s": ("job.deps", "project dependencies (requirements.txt / pyproject.toml)"),
    "first_output_s": ("job.first_output", "script start to its first output"),
}


def record_timings(ledger: Ledger, job: Job, status: dict[str, Any], seen: set[tuple[int, str]]) -> None:
    """Add an event for each timing of ``status`` (this attempt's) not recorded yet: not in
    ``seen``, nor in the ledger (a reattached controller starts with an empty ``seen``)."""
    timings = status.get("timings") or {}
    if timings and (0, "loaded") not in seen:
        seen.add((0, "loaded"))
        kinds = {kind: key for key, (kind, _) in PARTS.items()}
        for event in ledger.events(job_id=job.id, limit=100_000):
            if event.kind in kinds:
                seen.add((int(event.data.get("attempt") or 0), kinds[event.kind]))
    for key, (kind, what) in PARTS.items():
        seconds = timings.get(key)
        if seconds is None or (job.attempt, key) in seen:
            continue
        seen.add((job.attempt, key))
        shown = duration(float(seconds)) if float(seconds) >= 1 else f"{float(seconds):.2f}s"
        ledger.add_event(
            kind,
            f"attempt {job.attempt}: {what}: {shown}",
            job_id=job.id,
            data={"attempt": job.attempt, "seconds": float(seconds)},
        )
