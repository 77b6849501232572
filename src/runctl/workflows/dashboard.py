"""What ``runctl top`` shows, as plain data: a snapshot of jobs, resources, events and the
series behind its sparklines. Kept apart from the textual app so ``runctl top --output json``
and Python users get the same figures without a terminal.

Decisions where the issue is silent:

* **Jobs shown**: every job not yet final, then the :data:`RECENT_FINISHED` most recently
  created final ones (dimmed in the dashboard), so a job that just ended does not vanish.
* **Step / last checkpoint**: the latest heartbeat's ``step`` when there is one, else the
  newest complete checkpoint in the job's checkpoint directory (read live for a local
  directory), else the ``last_checkpoint`` the ledger recorded when the job ended.
* **Cost sparkline**: the spend rate ($/h summed over billable intervals) sampled at
  :data:`SERIES_POINTS` points over the last :data:`SERIES_WINDOW_S`, computed from the
  ledger's usage intervals, so it has history the moment ``top`` starts.
* **GPU sparkline**: from heartbeats. A :data:`HeartbeatSource` is any function
  ``(ledger, job_id, since) -> [Heartbeat]``; the default, :func:`ledger_heartbeats`, reads
  events of kind :data:`HEARTBEAT_EVENT` (``data = {"gpu_percent": 0-100, "step": N}``) from the
  ledger (``gpu_percent`` as in the agent's ``status.json``). A source that samples the
  agent's ``status.json`` in storage plugs in the same way.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.core import checkpoints
from runctl.core.cost import charges
from runctl.core.ledger import Event, Job, Ledger, Resource, UsageInterval

HEARTBEAT_EVENT = "agent.heartbeat"
RECENT_FINISHED = 10
SERIES_WINDOW_S = 3600.0
SERIES_POINTS = 60
RECENT_EVENTS = 30


@dataclass(frozen=True)
class Heartbeat:
    """One status report from the machine running a job."""

    ts: float
    gpu_util: float | None = None  # percent, 0-100
    step: int | None = None


HeartbeatSource = Callable[[Ledger, str, float], list[Heartbeat]]


def ledger_heartbeats(ledger: Ledger, job_id: str, since: float) -> list[Heartbeat]:
    """Heartbeats stored as ledger events of kind :data:`HEARTBEAT_EVENT`, oldest first."""
    beats = []
    for event in ledger.events(job_id=job_id, limit=SERIES_POINTS * 10):
        if event.kind != HEARTBEAT_EVENT or event.ts < since:
            continue
        gpu, step = event.data.get("gpu_percent"), event.data.get("step")
        beats.append(
            Heartbeat(
                ts=event.ts,
                gpu_util=float(gpu) if isinstance(gpu, int | float) else None,
                step=int(step) if isinstance(step, int) else None,
            )
        )
    return beats


@dataclass
class JobStatus:
    """One row of the jobs table."""

    job: Job
    elapsed_s: float | None
    rate_usd_per_hour: float
    cost_usd: float
    step: int | None
    last_checkpoint: str | None
    gpu_util: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.job.id,
            "name": self.job.name,
            "provider": self.job.provider,
            "state": self.job.state,
            "attempt": self.job.attempt,
            "started_at": self.job.started_at,
            "elapsed_s": self.elapsed_s,
            "rate_usd_per_hour": self.rate_usd_per_hour,
            "cost_usd": self.cost_usd,
            "step": self.step,
            "last_checkpoint": self.last_checkpoint,
            "log_path": self.job.log_path,
            "gpu_util": self.gpu_util,
        }


@dataclass
class Snapshot:
    """Everything one refresh of the dashboard shows."""

    taken_at: float
    jobs: list[JobStatus]
    resources: list[Resource]
    events: list[Event]
    spend_rate_series: list[float]
    rate_usd_per_hour: float
    cost_usd: float  # over the jobs shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "jobs": [j.to_dict() for j in self.jobs],
            "resources": [r.to_dict() for r in self.resources],
            "events": [e.to_dict() for e in self.events],
            "spend_rate_series": self.spend_rate_series,
            "rate_usd_per_hour": self.rate_usd_per_hour,
            "cost_usd": self.cost_usd,
        }


def spend_rate_series(
    intervals: list[UsageInterval],
    *,
    now: float,
    window: float = SERIES_WINDOW_S,
    points: int = SERIES_POINTS,
) -> list[float]:
    """$/h being spent at ``points`` evenly spaced instants of the last ``window`` seconds."""
    step = window / (points - 1)
    intervals = [iv for iv in intervals if iv.ended_at is None or iv.ended_at >= now - window]
    series = []
    for i in range(points):
        t = now - window + i * step
        series.append(
            sum(
                iv.rate_usd_per_hour
                for iv in intervals
                if iv.started_at <= t and (iv.ended_at is None or t < iv.ended_at)
            )
        )
    return series


def _progress(job: Job, beats: list[Heartbeat]) -> tuple[int | None, str | None]:
    """(step, last checkpoint path) — see the module docstring for the order."""
    directory = Path(job.checkpoint_dir) if job.checkpoint_dir else None
    latest = checkpoints.latest_checkpoint(directory) if directory and directory.is_dir() else None
    path = str(latest.path) if latest else job.last_checkpoint
    beat_steps = [b.step for b in beats if b.step is not None]
    if beat_steps:
        return beat_steps[-1], path
    if latest is not None:
        return latest.step, path
    return (checkpoints.step_of(Path(path).name) if path else None), path


def snapshot(
    ledger: Ledger,
    *,
    now: float | None = None,
    heartbeats: HeartbeatSource = ledger_heartbeats,
) -> Snapshot:
    """Read the ledger (and the heartbeat source) once and build what ``top`` shows."""
    now = time.time() if now is None else now
    active = ledger.list_jobs(states=("pending", "running"))
    finished = [j for j in ledger.list_jobs(limit=len(active) + RECENT_FINISHED * 2) if j.is_final]
    jobs = active + finished[:RECENT_FINISHED]

    usage = ledger.usage()
    by_job: dict[str, list[UsageInterval]] = defaultdict(list)
    for interval in usage:
        if interval.job_id:
            by_job[interval.job_id].append(interval)
    cost_by_job: dict[str, float] = defaultdict(float)  # under the providers' billing rules
    for charge in charges(usage, {r.id: r for r in ledger.list_resources()}, now=now):
        if charge.job_id:
            cost_by_job[charge.job_id] += charge.usd()

    rows = []
    for job in jobs:
        intervals = by_job.get(job.id, [])
        beats = heartbeats(ledger, job.id, now - SERIES_WINDOW_S)
        step, last = _progress(job, beats)
        start = job.started_at
        rows.append(
            JobStatus(
                job=job,
                elapsed_s=None if start is None else (job.ended_at or now) - start,
                rate_usd_per_hour=sum(iv.rate_usd_per_hour for iv in intervals if iv.ended_at is None),
                cost_usd=cost_by_job.get(job.id, 0.0),
                step=step,
                last_checkpoint=last,
                gpu_util=[b.gpu_util for b in beats if b.gpu_util is not None][-SERIES_POINTS:],
            )
        )
    return Snapshot(
        taken_at=now,
        jobs=rows,
        resources=ledger.list_resources(include_gone=False),
        events=ledger.events(limit=RECENT_EVENTS),
        spend_rate_series=spend_rate_series(usage, now=now),
        rate_usd_per_hour=sum(iv.rate_usd_per_hour for iv in usage if iv.ended_at is None),
        cost_usd=sum(r.cost_usd for r in rows),
    )
