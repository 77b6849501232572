"""What ``runctl top`` and ``runctl dashboard`` show, as plain data: a snapshot of jobs,
resources, events and the series behind its sparklines (``top``), and the four views of the web
dashboard (:func:`now_view`, :func:`job_view`, :func:`money_view`, :func:`reliability_view`).
Kept apart from the textual app and the web pages so ``--output json``, the dashboard's
``/api/...`` endpoints and Python users get the same figures without a terminal or a browser.

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

Decisions for the web dashboard (``runctl dashboard``), built on the SQLite ledger before the
team ledger exists:

* **Owner** is the host the ledger recorded as starting the job (``Job.host``): the ledger does
  not store the ``runctl:user`` tag yet; when it does, the user takes the host's place here.
* **Project** is the part of the job name before its first ``.`` (``vision.resnet50`` →
  ``vision``; job names allow letters, digits, ``.``, ``_`` and ``-``); a name without a ``.``
  has no project (shown as ``-``, grouped as :data:`NO_PROJECT`).
* **Heartbeat age**: the newest :data:`HEARTBEAT_EVENT` of the job; a local job, which sends
  none, counts its log file's last write (the script is alive and printing).
* **Unaccounted for** (red, at the top of Now): every ``intent`` row (a create in flight or
  interrupted: ``resources reconcile`` settles it), and every live, non-persistent resource
  whose job has ended or is unknown (leaked: the dashboard offers to release it). Nothing here
  asks a cloud: the page shows the ledger; reconcile asks the clouds.
* **Attempts** are the job's machines (resources of kind instance, pod or process) in the
  order they were created; ``job.attempt`` events name the resource of each attempt where they
  exist. An attempt's cost is its machine's; volumes count in the job's total only.
* **Money** covers the last :data:`MONEY_DAYS` UTC days, today included; each charge is split
  at midnight UTC and a billing-minimum top-up falls on the day its period started, as
  ``cost report --by day`` does, so every figure equals ``cost report``'s for the same window.
  "This month against each budget": the month's spend always, and the ``[cost]`` budget's own
  period (day, week or month) against ``budget_usd`` when one is set.
* **$ lost to preemption**: for each preempted attempt, the seconds from the newest checkpoint
  time the ledger knows for that attempt (a heartbeat's ``checkpoint_at``) — else from the
  attempt's first billed second, an upper bound, marked as such — to the preemption, times the
  machine's rate.
* **Reliability**: machine-hours and preemptions per (type, zone, market) over the whole
  ledger; a preemption is a ``job.preemption`` event (an attempt preempted, then resumed) or a
  job that ended ``preempted``; a market the ledger did not record shows as ``-``. Outcomes are
  the final states of jobs per ISO week of their end, the last :data:`OUTCOME_WEEKS` weeks.
* **Nothing secret on a page**: the Job view masks secrets (the log redactor) in the log tail,
  the job's detail and event messages, and withholds the message of error events (kinds
  ``*_error`` / ``*_failed``: a provider's raw answer); ``runctl events`` shows it locally.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.core import checkpoints
from runctl.core.budget import period_start
from runctl.core.cost import DAY_S, Charge, charges, resource_type
from runctl.core.errors import NotFoundError
from runctl.core.ledger import Event, Job, Ledger, Resource, UsageInterval
from runctl.core.logs import redact

if TYPE_CHECKING:
    from runctl.core.config import CostConfig

HEARTBEAT_EVENT = "agent.heartbeat"
RECENT_FINISHED = 10
SERIES_WINDOW_S = 3600.0
SERIES_POINTS = 60
RECENT_EVENTS = 30
MONEY_DAYS = 30
OUTCOME_WEEKS = 12
TOP_JOBS = 10
LOG_TAIL_BYTES = 16384
#: Resource kinds that are a machine a job runs on (an attempt); others (volumes) are not.
MACHINE_KINDS = frozenset({"instance", "pod", "process"})
#: What Money's chart can stack spend by.
MONEY_GROUPINGS = ("provider", "owner", "project")
NO_PROJECT = "(none)"


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


# -- the web dashboard's views -----------------------------------------------------------------


def owner_of(job: Job | None) -> str:
    """Who started ``job`` (module docstring: the host until the ledger records the user)."""
    return (job.host if job else None) or "unknown"


def project_of(job: Job | None) -> str | None:
    """The project in ``job``'s name, or None (module docstring)."""
    if job is None or "." not in job.name:
        return None
    return job.name.split(".", 1)[0] or None


def machine_of(resource: Resource) -> str:
    """What the machine is, as the ledger recorded it: its type (else kind) and cloud id."""
    return f"{resource_type(resource)} {resource.cloud_id or ''}".strip()


def _heartbeat_at(ledger: Ledger, job: Job) -> float | None:
    for event in reversed(ledger.events(job_id=job.id, limit=50)):
        if event.kind == HEARTBEAT_EVENT:
            return event.ts
    if job.log_path:
        try:
            return Path(job.log_path).stat().st_mtime
        except OSError:
            return None
    return None


@dataclass
class NowJob:
    """One running (or pending) job on the Now page."""

    id: str
    name: str
    owner: str
    project: str | None
    provider: str
    state: str
    machine: str | None
    attempt: int
    heartbeat_age_s: float | None
    cost_usd: float
    rate_usd_per_hour: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LiveResource:
    """One live resource, with what it cost so far and why it is flagged (None: accounted for)."""

    resource: Resource
    cost_usd: float
    rate_usd_per_hour: float
    problem: str | None = None
    releasable: bool = False

    def to_dict(self) -> dict[str, Any]:
        r = self.resource
        return {
            "id": r.id,
            "job_id": r.job_id,
            "provider": r.provider,
            "kind": r.kind,
            "cloud_id": r.cloud_id,
            "state": r.state,
            "zone": r.zone,
            "machine": machine_of(r),
            "persistent": r.persistent,
            "created_at": r.created_at,
            "cost_usd": self.cost_usd,
            "rate_usd_per_hour": self.rate_usd_per_hour,
            "problem": self.problem,
            "releasable": self.releasable,
        }


@dataclass
class NowView:
    """What is running and billing now, and what the ledger cannot account for."""

    taken_at: float
    jobs: list[NowJob]
    resources: list[LiveResource]

    @property
    def unaccounted(self) -> list[LiveResource]:
        return [r for r in self.resources if r.problem]

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "rate_usd_per_hour": sum(r.rate_usd_per_hour for r in self.resources),
            "jobs": [j.to_dict() for j in self.jobs],
            "resources": [r.to_dict() for r in self.resources],
            "unaccounted": [r.resource.id for r in self.unaccounted],
        }


def _cost_and_rate(found: list[Charge]) -> tuple[float, float]:
    return sum(c.usd() for c in found), sum(c.rate_usd_per_hour for c in found if c.open)


def now_view(ledger: Ledger, *, now: float | None = None) -> NowView:
    """The Now page: running jobs, live resources, anything unaccounted for (module docstring)."""
    now = time.time() if now is None else now
    live = ledger.list_resources(include_gone=False)
    resources = {r.id: r for r in live}
    by_resource: dict[str, list[Charge]] = defaultdict(list)
    for charge in charges(_usage_of(ledger, live), resources, now=now):
        by_resource[charge.resource_id].append(charge)
    jobs = ledger.list_jobs(states=("pending", "running"))
    job_ids = {j.id for j in jobs}
    rows = []
    for job in jobs:
        mine = [r for r in live if r.job_id == job.id]
        machines = [r for r in mine if r.kind in MACHINE_KINDS]
        cost, rate = _cost_and_rate([c for r in mine for c in by_resource.get(r.id, [])])
        beat = _heartbeat_at(ledger, job)
        rows.append(
            NowJob(
                id=job.id,
                name=job.name,
                owner=owner_of(job),
                project=project_of(job),
                provider=job.provider,
                state=job.state,
                machine=machine_of(machines[-1]) if machines else None,
                attempt=job.attempt,
                heartbeat_age_s=None if beat is None else max(0.0, now - beat),
                cost_usd=cost,
                rate_usd_per_hour=rate,
            )
        )
    listed = []
    for resource in live:
        cost, rate = _cost_and_rate(by_resource.get(resource.id, []))
        problem, releasable = _problem(ledger, resource, job_ids)
        listed.append(LiveResource(resource, cost, rate, problem, releasable))
    listed.sort(key=lambda r: (r.problem is None, r.resource.created_at))
    return NowView(taken_at=now, jobs=rows, resources=listed)


def _usage_of(ledger: Ledger, live: list[Resource]) -> list[UsageInterval]:
    """Every usage interval of the live resources (a cost so far spans the resource's life)."""
    return [i for r in live for i in ledger.usage(resource_id=r.id)]


def _problem(ledger: Ledger, resource: Resource, running: set[str]) -> tuple[str | None, bool]:
    """Why a live resource is unaccounted for, and whether the dashboard may release it."""
    if resource.state == "intent":
        return "intent: created or not? 'runctl resources reconcile' settles it", False
    if resource.persistent or resource.job_id in running:
        return None, False
    if resource.job_id is None:
        return "live, and no job owns it", True
    try:
        job = ledger.get_job(resource.job_id)
    except NotFoundError:
        return f"live, and its job {resource.job_id} is not in the ledger", True
    return f"live, and its job ended {job.state}", True


@dataclass
class Attempt:
    """One attempt of a job: the machine it ran on and how it ended."""

    number: int
    resource_id: str | None
    machine: str | None
    market: str | None
    zone: str | None
    started_at: float | None
    ended_at: float | None
    outcome: str
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class JobView:
    """The Job page: attempts, timeline, checkpoints, cost, log tail."""

    job: Job
    taken_at: float
    owner: str
    project: str | None
    cost_usd: float
    rate_usd_per_hour: float
    attempts: list[Attempt]
    timeline: list[Event]
    checkpoints: list[checkpoints.CheckpointInfo]
    log_tail: str | None

    def to_dict(self) -> dict[str, Any]:
        job = self.job
        return {
            "job": {
                "id": job.id,
                "name": job.name,
                "provider": job.provider,
                "state": job.state,
                "attempt": job.attempt,
                "created_at": job.created_at,
                "started_at": job.started_at,
                "ended_at": job.ended_at,
                "exit_code": job.exit_code,
                "detail": job.detail,
                "last_checkpoint": job.last_checkpoint,
            },
            "taken_at": self.taken_at,
            "owner": self.owner,
            "project": self.project,
            "cost_usd": self.cost_usd,
            "rate_usd_per_hour": self.rate_usd_per_hour,
            "attempts": [a.to_dict() for a in self.attempts],
            "timeline": [
                {"ts": e.ts, "kind": e.kind, "message": e.message, "resource_id": e.resource_id}
                for e in self.timeline
            ],
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "log_tail": self.log_tail,
        }


def job_view(ledger: Ledger, job_id: str, *, now: float | None = None) -> JobView:
    """The Job page of ``job_id`` (NotFoundError for an unknown id)."""
    now = time.time() if now is None else now
    job = ledger.get_job(job_id)
    resources = {r.id: r for r in ledger.list_resources(job_id=job.id)}
    found = charges(ledger.usage(job_id=job.id), resources, now=now)
    events = [e for e in ledger.events(job_id=job.id, limit=500) if e.kind != HEARTBEAT_EVENT]
    cost, rate = _cost_and_rate(found)
    shown = replace(job, detail=redact(job.detail) if job.detail else None)
    directory = Path(job.checkpoint_dir) if job.checkpoint_dir else None
    return JobView(
        job=shown,
        taken_at=now,
        owner=owner_of(job),
        project=project_of(job),
        cost_usd=cost,
        rate_usd_per_hour=rate,
        attempts=_attempts(job, resources, found, events),
        timeline=[replace(e, message=shown_message(e)) for e in events],
        checkpoints=checkpoints.list_checkpoints(directory) if directory else [],
        log_tail=log_tail(job),
    )


def shown_message(event: Event) -> str:
    """An event's message as a page may show it: secrets masked, and a provider's own error
    text (events of kind ``*_error`` / ``*_failed``) withheld; ``runctl events`` has it."""
    if event.kind.endswith(("_error", "_failed")):
        where = f"'runctl events --job {event.job_id}'" if event.job_id else "'runctl events'"
        return f"{event.kind.split('.')[0]} error: withheld here; {where} shows it"
    return redact(event.message)


def _attempts(
    job: Job, resources: dict[str, Resource], found: list[Charge], events: list[Event]
) -> list[Attempt]:
    machines = sorted((r for r in resources.values() if r.kind in MACHINE_KINDS), key=lambda r: r.created_at)
    named = {
        int(e.data["attempt"]): e.resource_id
        for e in events
        if e.kind == "job.attempt" and isinstance(e.data.get("attempt"), int) and e.resource_id
    }
    ended = {
        int(e.data["attempt"]): (e.ts, "preempted" if e.kind == "job.preemption" else "failed")
        for e in events
        if e.kind in ("job.preemption", "job.restart") and isinstance(e.data.get("attempt"), int)
    }
    first = job.attempt - len(machines) + 1 if not named else min(named)
    attempts = []
    for index, machine in enumerate(machines):
        number = next((n for n, rid in named.items() if rid == machine.id), max(first, 1) + index)
        mine = [c for c in found if c.resource_id == machine.id]
        closed = [c for c in mine if not c.open]
        end, outcome = ended.get(number, (None, None))
        if outcome is None:
            outcome = job.state if number == job.attempt else "ended"
            end = job.ended_at if number == job.attempt else None
        attempts.append(
            Attempt(
                number=number,
                resource_id=machine.id,
                machine=machine_of(machine),
                market=machine.spec.get("market"),
                zone=machine.zone,
                started_at=min((c.started_at for c in mine), default=machine.created_at),
                ended_at=end if end is not None else max((c.ended_at for c in closed), default=None),
                outcome=outcome,
                cost_usd=sum(c.usd() for c in mine),
            )
        )
    return sorted(attempts, key=lambda a: a.number)


def log_tail(job: Job, *, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The end of a local job's log (whole lines, secrets masked); None when there is none here."""
    if not job.log_path:
        return None
    try:
        with Path(job.log_path).open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = text.partition("\n")[2]
    return redact(text)


@dataclass
class MoneyView:
    """Spend per day (stacked three ways), budgets, the most expensive jobs, preemption losses."""

    since: float
    until: float
    days: list[str]
    stacks: dict[str, dict[str, list[float]]]  # grouping -> series name -> $ per day
    budgets: list[dict[str, Any]]
    top_jobs: list[dict[str, Any]]
    preemption_losses: list[dict[str, Any]]

    @property
    def total_usd(self) -> float:
        return sum(sum(series) for series in self.stacks["provider"].values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "days": self.days,
            "total_usd": self.total_usd,
            "per_day": {
                grouping: {name: values for name, values in series.items()}
                for grouping, series in self.stacks.items()
            },
            "budgets": self.budgets,
            "top_jobs": self.top_jobs,
            "preemption_lost_usd": sum(p["lost_usd"] for p in self.preemption_losses),
            "preemption_losses": self.preemption_losses,
        }


def money_view(
    ledger: Ledger, *, limits: CostConfig | None = None, now: float | None = None, days: int = MONEY_DAYS
) -> MoneyView:
    """The Money page over the last ``days`` UTC days (module docstring)."""
    now = time.time() if now is None else now
    today = now - (now % DAY_S)
    since = today - (days - 1) * DAY_S
    labels = [datetime.fromtimestamp(since + i * DAY_S, UTC).date().isoformat() for i in range(days)]
    resources = {r.id: r for r in ledger.list_resources()}
    jobs = {j.id: j for j in ledger.list_jobs()}
    found = charges(ledger.usage(), resources, now=now)
    stacks: dict[str, dict[str, list[float]]] = {g: {} for g in MONEY_GROUPINGS}
    by_job: dict[str, float] = defaultdict(float)
    for charge in found:
        if charge.ended_at < since:
            continue
        job = jobs.get(charge.job_id or "")
        keys = {"provider": charge.provider, "owner": owner_of(job), "project": project_of(job) or NO_PROJECT}
        first = max(0, int((max(charge.started_at, since) - since) // DAY_S))
        last = min(days - 1, int((charge.ended_at - since) // DAY_S))
        for day in range(first, last + 1):
            start = since + day * DAY_S
            usd = charge.usd(start, min(start + DAY_S, now))
            if usd <= 0:
                continue
            for grouping, key in keys.items():
                stacks[grouping].setdefault(key, [0.0] * days)[day] += usd
            by_job[charge.job_id or "-"] += usd
    top = sorted(by_job.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_JOBS]
    first_billed: dict[str, float] = {}
    for charge in found:
        first_billed[charge.resource_id] = min(charge.started_at, first_billed.get(charge.resource_id, now))
    return MoneyView(
        since=since,
        until=now,
        days=labels,
        stacks={g: dict(sorted(series.items())) for g, series in stacks.items()},
        budgets=_budgets(found, limits, now),
        top_jobs=[
            {"id": job_id, "name": jobs[job_id].name if job_id in jobs else "(no job)", "cost_usd": usd}
            for job_id, usd in top
        ],
        preemption_losses=_preemption_losses(preemptions(ledger, jobs, resources), jobs, first_billed),
    )


def _budgets(found: list[Charge], limits: CostConfig | None, now: float) -> list[dict[str, Any]]:
    """This month's spend, and the configured budget's period against its limit."""
    periods: dict[str, float | None] = {"month": None}
    if limits is not None and limits.budget_usd is not None:
        periods[limits.budget_period] = limits.budget_usd
    rows = []
    for period, limit in periods.items():
        start = period_start(period, now)
        spent = sum(c.usd(start, now) for c in found)
        rows.append(
            {
                "period": period,
                "since": start,
                "spent_usd": spent,
                "budget_usd": limit,
                "used": None if not limit else spent / limit,
            }
        )
    return rows


@dataclass(frozen=True)
class Preemption:
    """One preempted attempt: when, on which machine, and the job's events (for checkpoints)."""

    job_id: str
    attempt: int
    at: float
    machine: Resource | None
    events: list[Event]


def preemptions(ledger: Ledger, jobs: dict[str, Job], resources: dict[str, Resource]) -> list[Preemption]:
    """Every preemption the ledger knows (module docstring), with its attempt's machine."""
    found: list[tuple[str, int, float]] = []
    for event in ledger.events(kind="job.preemption", limit=1_000_000):
        if event.job_id in jobs:
            attempt = event.data.get("attempt")
            found.append((event.job_id, int(attempt) if isinstance(attempt, int) else 1, event.ts))
    found += [(j.id, j.attempt, j.ended_at or j.created_at) for j in jobs.values() if j.state == "preempted"]
    machines: dict[str, list[Resource]] = defaultdict(list)
    for resource in resources.values():
        if resource.job_id and resource.kind in MACHINE_KINDS:
            machines[resource.job_id].append(resource)
    events: dict[str, list[Event]] = {}
    result = []
    for job_id, attempt, at in found:
        mine = events.setdefault(job_id, ledger.events(job_id=job_id, limit=500))
        named = next(
            (e.resource_id for e in mine if e.kind == "job.attempt" and e.data.get("attempt") == attempt),
            None,
        )
        latest = max(machines.get(job_id, []), key=lambda r: r.created_at, default=None)
        machine = resources.get(named) if named else latest
        result.append(Preemption(job_id, attempt, at, machine, mine))
    return result


def _preemption_losses(
    found: list[Preemption], jobs: dict[str, Job], first_billed: dict[str, float]
) -> list[dict[str, Any]]:
    """Work redone after each preemption × the machine's rate (module docstring)."""
    losses = []
    for p in found:
        if p.machine is None:
            continue
        checkpoint_at = max(
            (
                float(e.data["checkpoint_at"])
                for e in p.events
                if e.kind == HEARTBEAT_EVENT
                and e.data.get("attempt") in (p.attempt, None)
                and isinstance(e.data.get("checkpoint_at"), int | float)
                and float(e.data["checkpoint_at"]) <= p.at
            ),
            default=None,
        )
        started = first_billed.get(p.machine.id, p.machine.created_at)
        redone = max(0.0, p.at - (checkpoint_at if checkpoint_at is not None else started))
        losses.append(
            {
                "job_id": p.job_id,
                "name": jobs[p.job_id].name,
                "attempt": p.attempt,
                "machine": machine_of(p.machine),
                "preempted_at": p.at,
                "redone_s": redone,
                "lost_usd": redone * (p.machine.rate_usd_per_hour or 0.0) / 3600.0,
                "upper_bound": checkpoint_at is None,
            }
        )
    return losses


@dataclass
class ReliabilityView:
    """Preemptions per machine-hour per (type, zone, market); job outcomes per week."""

    markets: list[dict[str, Any]]
    weeks: list[str]
    outcomes: dict[str, list[int]]  # final state -> jobs per week

    def to_dict(self) -> dict[str, Any]:
        return {"markets": self.markets, "weeks": self.weeks, "outcomes": self.outcomes}


def reliability_view(
    ledger: Ledger, *, now: float | None = None, weeks: int = OUTCOME_WEEKS
) -> ReliabilityView:
    """The Reliability page (module docstring)."""
    now = time.time() if now is None else now
    resources = {r.id: r for r in ledger.list_resources()}
    jobs = {j.id: j for j in ledger.list_jobs()}
    Key = tuple[str, str, str]
    hours: dict[Key, float] = defaultdict(float)
    for charge in charges(ledger.usage(), resources, now=now):
        if charge.kind in MACHINE_KINDS:
            hours[_market_key(resources.get(charge.resource_id))] += charge.seconds() / 3600.0
    preempted: dict[Key, int] = defaultdict(int)
    for preemption in preemptions(ledger, jobs, resources):
        preempted[_market_key(preemption.machine)] += 1
    markets = [
        {
            "type": key[0],
            "zone": key[1],
            "market": key[2],
            "machine_hours": hours.get(key, 0.0),
            "preemptions": preempted.get(key, 0),
            "per_machine_hour": preempted.get(key, 0) / hours[key] if hours.get(key) else None,
        }
        for key in sorted(set(hours) | set(preempted))
    ]
    this_monday = datetime.fromtimestamp(now, UTC).date()
    this_monday -= timedelta(days=this_monday.weekday())
    labels = [_week(this_monday - timedelta(weeks=weeks - 1 - i)) for i in range(weeks)]
    index = {label: i for i, label in enumerate(labels)}
    outcomes: dict[str, list[int]] = {}
    for job in jobs.values():
        if not job.is_final or job.ended_at is None:
            continue
        slot = index.get(_week(datetime.fromtimestamp(job.ended_at, UTC).date()))
        if slot is not None:
            outcomes.setdefault(job.state, [0] * weeks)[slot] += 1
    return ReliabilityView(markets=markets, weeks=labels, outcomes=dict(sorted(outcomes.items())))


def _market_key(resource: Resource | None) -> tuple[str, str, str]:
    if resource is None:
        return ("unknown", "-", "-")
    return (resource_type(resource), resource.zone or "-", str(resource.spec.get("market") or "-"))


def _week(day: Any) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
