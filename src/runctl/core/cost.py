"""Cost from the ledger: the sum over usage intervals of duration × the rate at the time.

An open interval (the resource is still billable) is costed up to ``now``. Provider billing
rules (EC2's 60 s minimum, per-second granularity) belong to the cost-truth work and will refine
:func:`interval_cost`; today every interval is billed per second, exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from runctl.core.ledger import Ledger, UsageInterval


def interval_cost(interval: UsageInterval, *, now: float | None = None) -> float:
    """Dollars spent in one interval (up to ``now`` if it is still open)."""
    end = interval.ended_at if interval.ended_at is not None else (now or time.time())
    return max(0.0, end - interval.started_at) * interval.rate_usd_per_hour / 3600.0


def total_cost(intervals: Iterable[UsageInterval], *, now: float | None = None) -> float:
    return sum(interval_cost(i, now=now) for i in intervals)


def job_cost(ledger: Ledger, job_id: str) -> float:
    """What ``job_id`` has cost so far, over every attempt and every resource."""
    return total_cost(ledger.usage(job_id=job_id))
