"""Cost from the ledger: the providers' billing rules applied to usage intervals, and reports.

The ledger opens a usage interval when a resource enters a billable state, at the resource's
rate, and closes it when the resource leaves it; :meth:`Ledger.set_rate` (a new spot price, a
resumed pod's new ``costPerHr``) splits an open interval at the new rate. Cost is the sum over
intervals of seconds × rate, billed per second, with the billing minimum of the resource's
provider and kind: the provider states it (``ResourceProvider.billing_minimum_s``: 60 s for an
EC2 instance or EBS volume, none for a RunPod pod or a local process) and the lifecycle records
it in the resource's spec (``billing_minimum_s``) when the row is written, so cost, like every
figure here, is read from the ledger alone and this module names no provider.

Decisions recorded here:

* A **billable period** is a maximal run of contiguous intervals of one resource: a rate change
  splits an interval but does not start a new period. A stop/start gap (a non-billable state)
  is never billed and ends the period; the next running period has its own minimum, as EC2 bills
  a restarted instance.
* A period shorter than its minimum is billed as if it lasted the minimum, the shortfall at the
  period's last rate. That top-up is owed the moment the period starts: an open period already
  carries it, a report window counts it when the window contains the period's start, and
  ``--by day`` puts it on that day.
* An open interval is billed up to ``now``.
* A resource with no known rate (not in the catalogue) bills $0 in the ledger; reports list it in
  their notes so a $0 is never mistaken for free. A rate recorded as an upper bound (a spot price
  AWS did not report believably) is listed too.
* The cost of a job is the sum over every attempt and every resource of the job.
* Reports clip intervals to ``[since, until)``; ``--by day`` splits them at midnight UTC.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from runctl.core.ledger import Ledger, Resource, UsageInterval

GROUPINGS = ("job", "resource", "provider", "type", "day")
DAY_S = 86400.0


#: The spec key under which the lifecycle records a resource's billing minimum (seconds).
BILLING_MINIMUM_KEY = "billing_minimum_s"


def billing_minimum_s(resource: Resource | None) -> float:
    """The shortest period ``resource`` is billed for, as recorded with it (0: per second)."""
    return 0.0 if resource is None else float(resource.spec.get(BILLING_MINIMUM_KEY) or 0.0)


def interval_cost(interval: UsageInterval, *, now: float | None = None) -> float:
    """Dollars of one interval at its rate, per second, no minimum (up to ``now`` if open)."""
    end = interval.ended_at if interval.ended_at is not None else (time.time() if now is None else now)
    return max(0.0, end - interval.started_at) * interval.rate_usd_per_hour / 3600.0


@dataclass(frozen=True)
class Charge:
    """A stretch of billed time of one resource at one rate, plus any top-up to the billing
    minimum (owed at ``started_at``). ``ended_at`` of an open charge is the ``now`` it was made at."""

    resource_id: str
    job_id: str | None
    provider: str
    kind: str
    type: str
    started_at: float
    ended_at: float
    rate_usd_per_hour: float
    open: bool = False
    topup_usd: float = 0.0

    def seconds(self, since: float | None = None, until: float | None = None) -> float:
        """Billed seconds inside ``[since, until)``."""
        start = self.started_at if since is None else max(self.started_at, since)
        end = self.ended_at if until is None else min(self.ended_at, until)
        return max(0.0, end - start)

    def topup_in(self, since: float | None = None, until: float | None = None) -> float:
        inside = (since is None or since <= self.started_at) and (until is None or self.started_at < until)
        return self.topup_usd if inside else 0.0

    def usd(self, since: float | None = None, until: float | None = None) -> float:
        """Dollars owed inside ``[since, until)`` (everything, without bounds)."""
        return self.seconds(since, until) * self.rate_usd_per_hour / 3600.0 + self.topup_in(since, until)


def resource_type(resource: Resource | None) -> str:
    """What a report's ``--by type`` groups on, from what the resource recorded: its instance
    type, its GPU (``2x H100`` for several), its volume type (``volume gp3``), else its kind."""
    if resource is None:
        return "unknown"
    spec = resource.spec
    gpu = spec.get("gpu_type") or (spec.get("gpu_types") or [None])[0]
    if spec.get("instance_type"):
        return str(spec["instance_type"])
    if gpu:
        count = int(spec.get("gpu_count") or 1)
        return f"{count}x {gpu}" if count > 1 else str(gpu)
    if spec.get("volume_type"):
        return f"{resource.kind} {spec['volume_type']}"
    return resource.kind


def charges(
    intervals: Iterable[UsageInterval], resources: Mapping[str, Resource], *, now: float | None = None
) -> list[Charge]:
    """The charges of ``intervals`` under their resources' billing rules (module docstring)."""
    now = time.time() if now is None else now
    by_resource: dict[str, list[UsageInterval]] = defaultdict(list)
    for interval in intervals:
        by_resource[interval.resource_id].append(interval)
    found: list[Charge] = []
    for resource_id, items in by_resource.items():
        resource = resources.get(resource_id)
        provider = resource.provider if resource else "unknown"
        kind = resource.kind if resource else "unknown"
        minimum_s = billing_minimum_s(resource)
        period: list[Charge] = []
        last_end: float | None = None
        for interval in sorted(items, key=lambda i: i.started_at):
            is_open = interval.ended_at is None
            end = now if interval.ended_at is None else interval.ended_at
            charge = Charge(
                resource_id=resource_id,
                job_id=interval.job_id,
                provider=provider,
                kind=kind,
                type=resource_type(resource),
                started_at=interval.started_at,
                ended_at=max(end, interval.started_at),
                rate_usd_per_hour=interval.rate_usd_per_hour,
                open=is_open,
            )
            # a rate change ends one interval and starts the next at the very same instant
            # (Ledger.set_rate); any other boundary, however short, is a stop and a new period
            if period and (last_end is None or interval.started_at != last_end):
                found.extend(_with_minimum(period, minimum_s))
                period = []
            period.append(charge)
            last_end = interval.ended_at
        found.extend(_with_minimum(period, minimum_s))
    return found


def _with_minimum(period: list[Charge], minimum_s: float) -> list[Charge]:
    """One billable period's charges, the first carrying the top-up to the billing minimum."""
    if not period:
        return []
    shortfall = minimum_s - sum(c.seconds() for c in period)
    if shortfall <= 0:
        return period
    topup = shortfall * period[-1].rate_usd_per_hour / 3600.0
    return [replace(period[0], topup_usd=topup), *period[1:]]


def ledger_charges(
    ledger: Ledger,
    *,
    job_id: str | None = None,
    resource_id: str | None = None,
    provider: str | None = None,
    now: float | None = None,
) -> list[Charge]:
    """The charges recorded in ``ledger`` (for one job, one resource, one provider, or all)."""
    if resource_id is not None:
        resources = {resource_id: ledger.get_resource(resource_id)}
    else:
        resources = {r.id: r for r in ledger.list_resources(job_id=job_id, provider=provider)}
    intervals = ledger.usage(job_id=job_id, resource_id=resource_id)
    if provider is not None:
        intervals = [i for i in intervals if i.resource_id in resources]
    return charges(intervals, resources, now=now)


def job_cost(ledger: Ledger, job_id: str, *, now: float | None = None) -> float:
    """What ``job_id`` has cost so far, over every attempt and every resource."""
    return sum(c.usd() for c in ledger_charges(ledger, job_id=job_id, now=now))


def resource_cost(ledger: Ledger, resource_id: str, *, now: float | None = None) -> float:
    """What one resource has cost so far, under its billing rule."""
    return sum(c.usd() for c in ledger_charges(ledger, resource_id=resource_id, now=now))


def spent(ledger: Ledger, *, since: float, now: float | None = None) -> float:
    """Dollars spent over the whole ledger since ``since`` (up to ``now``)."""
    now = time.time() if now is None else now
    return sum(c.usd(since, now) for c in ledger_charges(ledger, now=now))


def running_rate(ledger: Ledger) -> float:
    """What the resources billing now cost per hour, together."""
    return sum(c.rate_usd_per_hour for c in ledger_charges(ledger) if c.open)


# -- reports -----------------------------------------------------------------------------------


@dataclass
class ReportRow:
    """One group of a cost report."""

    key: str
    label: str
    cost_usd: float = 0.0
    hours: float = 0.0
    usd_per_hour_now: float = 0.0
    resources: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "cost_usd": round(self.cost_usd, 6),
            "hours": round(self.hours, 6),
            "usd_per_hour_now": round(self.usd_per_hour_now, 6),
            "resources": len(self.resources),
        }


@dataclass
class CostReport:
    """Costs grouped ``by`` one of :data:`GROUPINGS` inside ``[since, until)``."""

    by: str
    since: float | None
    until: float
    rows: list[ReportRow]
    notes: list[str]

    @property
    def total_usd(self) -> float:
        return sum(r.cost_usd for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "currency": "USD",
            "total_usd": round(self.total_usd, 6),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def to_csv(self) -> str:
        """One line per row: the same columns as the JSON rows (header first)."""
        out = io.StringIO()
        writer = csv.DictWriter(
            out,
            fieldnames=["key", "label", "cost_usd", "hours", "usd_per_hour_now", "resources"],
            lineterminator="\n",
        )
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row.to_dict())
        return out.getvalue()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def report(
    ledger: Ledger,
    *,
    by: str = "job",
    since: float | None = None,
    until: float | None = None,
    provider: str | None = None,
    now: float | None = None,
) -> CostReport:
    """What was spent in ``[since, until)`` (until defaults to now), grouped ``by``."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, not {by!r}")
    now = time.time() if now is None else now
    until = now if until is None else until
    resources = {r.id: r for r in ledger.list_resources(provider=provider)}
    intervals = [i for i in ledger.usage() if i.resource_id in resources]
    found = charges(intervals, resources, now=now)
    jobs = {j.id: j.name for j in ledger.list_jobs()} if by == "job" else {}
    rows: dict[str, ReportRow] = {}
    used: set[str] = set()
    for charge in found:
        for key, label, usd, seconds in _contributions(charge, by, since, until, resources, jobs):
            if seconds <= 0 and usd <= 0:
                continue
            row = rows.setdefault(key, ReportRow(key, label))
            row.cost_usd += usd
            row.hours += seconds / 3600.0
            row.resources.add(charge.resource_id)
            used.add(charge.resource_id)
        if charge.open and until >= now:
            key = _key(charge, by, resources, jobs)[0]
            if key in rows:
                rows[key].usd_per_hour_now += charge.rate_usd_per_hour
    if by == "day":
        ordered = sorted(rows.values(), key=lambda r: r.key)
    else:
        ordered = sorted(rows.values(), key=lambda r: (-r.cost_usd, r.key))
    return CostReport(by, since, until, ordered, _notes(used, resources))


def _key(
    charge: Charge, by: str, resources: Mapping[str, Resource], jobs: Mapping[str, str]
) -> tuple[str, str]:
    if by == "job":
        if charge.job_id is None:
            return "-", "(no job)"
        return charge.job_id, jobs.get(charge.job_id, "")
    if by == "resource":
        resource = resources.get(charge.resource_id)
        cloud = resource.cloud_id if resource and resource.cloud_id else ""
        return charge.resource_id, f"{charge.provider} {charge.kind} {cloud}".strip()
    if by == "provider":
        return charge.provider, charge.provider
    if by == "type":
        return charge.type, f"{charge.provider} {charge.kind}"
    day = _day(charge.ended_at - 1e-9)  # the current day of an open charge (for its rate)
    return day, day


def _contributions(
    charge: Charge,
    by: str,
    since: float | None,
    until: float,
    resources: Mapping[str, Resource],
    jobs: Mapping[str, str],
) -> list[tuple[str, str, float, float]]:
    """(key, label, dollars, seconds) this charge adds to the report's rows."""
    if by != "day":
        key, label = _key(charge, by, resources, jobs)
        return [(key, label, charge.usd(since, until), charge.seconds(since, until))]
    start = charge.started_at if since is None else max(charge.started_at, since)
    end = min(charge.ended_at, until)
    parts: list[tuple[str, str, float, float]] = []
    midnight = _midnight(start)
    while midnight < end:
        piece_start, piece_end = max(start, midnight), min(end, midnight + DAY_S)
        seconds = max(0.0, piece_end - piece_start)
        day = _day(midnight)
        parts.append((day, day, seconds * charge.rate_usd_per_hour / 3600.0, seconds))
        midnight += DAY_S
    topup = charge.topup_in(since, until)
    if topup:
        day = _day(charge.started_at)
        parts.append((day, day, topup, 0.0))
    return parts


def _midnight(ts: float) -> float:
    return ts - (ts % DAY_S)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def _notes(used: set[str], resources: Mapping[str, Resource]) -> list[str]:
    """What a reader must know about the figures: unknown rates, upper bounds."""
    notes: list[str] = []
    for resource_id in sorted(used):
        resource = resources[resource_id]
        cloud = f" {resource.cloud_id}" if resource.cloud_id else ""
        what = f"{resource_id} ({resource.provider} {resource.kind}{cloud})"
        rate = resource.spec.get("rate") or {}
        if resource.rate_usd_per_hour is None:
            notes.append(f"{what}: no price known (not in the catalogue); counted as $0")
        elif rate.get("source") == "upper-bound":
            notes.append(f"{what}: {rate.get('note') or 'rate recorded as an upper bound'}")
    return notes
