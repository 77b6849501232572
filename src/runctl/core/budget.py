"""Budgets: a launch that would break a ``[cost]`` limit is refused; a job stops at its own limit.

Limits (each optional, in ``[cost]``):

* ``budget_usd`` per ``budget_period`` — calendar periods in UTC: the day since midnight, the
  week since Monday 00:00, the month since the 1st. A launch is refused when what the ledger
  spent in the period plus the launch's worst case would pass it.
* ``max_hourly_usd`` — the hourly rate of everything billing now plus the launch's rate.
* ``max_cost_usd`` — per job. At launch: the launch's worst case. While the job runs its cost
  (every attempt, every resource) is watched (:class:`JobBudgetWatch`) and the job is stopped
  gracefully — SIGTERM, the script saves its checkpoint — when it reaches the limit: ``runctl
  local`` stops the script itself; for a remote job the controller writes a stop request into
  the job's storage that the agent's heartbeat turns into the same graceful stop
  (:mod:`runctl.agent.sync`). Such a job ends ``cancelled`` with exit code 79 and a detail
  naming the limit; its checkpoints are kept (a later run of the same name resumes only if
  asked, since ``cancelled`` is not resumed automatically).
* ``warn_at`` — a warning once a figure reaches this fraction of its limit: at launch, and once
  while a job runs.

Decisions recorded here:

* **Worst case of a launch** = its $/h (all machines) × max(max duration, billing minimum).
  Without a max duration the length is unknown and only the billing minimum (60 s on EC2,
  nothing elsewhere) is certain, so that is what the checks count — the estimate line says so;
  set ``--max-duration`` for a real worst case.
* A launch whose rate is unknown (a type missing from the catalogue) is refused while a budget
  or limit is set: its cost could not be checked.
* **When**: after the provider's plan (read-only calls: prices, images, zones) and before any
  mutating call or ledger write. A budget already used up, or a running rate already at its
  limit, is refused before even the plan: no request is sent at all.
* **Override**: ``--over-budget`` (on ``aws create``, ``runpod create``, the ``train``
  commands) launches anyway and records a ``budget.override`` event. It does not lift the
  running ``max_cost_usd`` stop: that is the cap the user set for the job.
* Refusals are :class:`BudgetError` (exit code 79) with the figures and the flag in the hint.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runctl.core import cost
from runctl.core.errors import BudgetError
from runctl.core.units import duration, usd

if TYPE_CHECKING:
    from runctl.core.config import CostConfig
    from runctl.core.ledger import Ledger
    from runctl.core.prices import Rate

log = logging.getLogger("runctl.budget")

OVERRIDE_FLAG = "--over-budget"


@dataclass(frozen=True)
class Estimate:
    """What a launch will cost: its rate, and its worst case when its length is bounded."""

    provider: str
    what: str
    usd_per_hour: float | None  # all machines together; None = unknown
    count: int = 1
    max_duration_s: float | None = None
    minimum_s: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def billed_s(self) -> float:
        """The seconds the budget checks count (see the module docstring)."""
        return max(self.max_duration_s or 0.0, self.minimum_s)

    @property
    def worst_case_usd(self) -> float | None:
        """Rate × max duration (at least the billing minimum); None without a max duration."""
        if self.usd_per_hour is None or self.max_duration_s is None:
            return None
        return self.usd_per_hour * self.billed_s / 3600.0

    @property
    def committed_usd(self) -> float | None:
        """What the checks count: the worst case, else the billing minimum's cost."""
        if self.usd_per_hour is None:
            return None
        return self.usd_per_hour * self.billed_s / 3600.0

    def line(self) -> str:
        """The one-line plan shown before a launch."""
        if self.usd_per_hour is None:
            return f"estimate: {self.what}: rate unknown (no catalogue price)"
        text = f"estimate: {self.what}: {usd(self.usd_per_hour, per_hour=True)}"
        if self.max_duration_s is not None:
            text += f"; worst case {usd(self.worst_case_usd or 0.0)} over {duration(self.max_duration_s)}"
        else:
            text += "; no max duration, so no worst case"
            if self.minimum_s:
                text += f" (at least {usd(self.committed_usd or 0.0)}: {self.minimum_s:g} s minimum)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "notes": list(self.notes),
            "worst_case_usd": self.worst_case_usd,
            "committed_usd": self.committed_usd,
        }


def catalogue_estimate(
    provider: str,
    rate: Rate,
    what: str,
    *,
    count: int = 1,
    spot: bool = False,
    minimum_s: float = 0.0,
    max_duration_s: float | None = None,
    stale_days: int = 30,
) -> Estimate:
    """An estimate from a catalogue price of one machine (no API call, no credentials): catalogues
    hold on-demand prices, so a spot launch is priced at on-demand, its upper bound, and says so;
    a price older than ``stale_days`` says that too."""
    notes = [rate.note] if rate.note else []
    if spot:
        notes.append(
            "spot/interruptible prices are not in the catalogue: priced at on-demand, an upper bound"
        )
    if rate.as_of:
        from runctl.core.prices import age_days

        age = age_days(rate.as_of)
        stale = f", older than [cost] price_stale_days ({stale_days})" if age > stale_days else ""
        notes.append(f"catalogue price dated {rate.as_of} ({age:.0f} days old{stale})")
    return Estimate(
        provider=provider,
        what=what,
        usd_per_hour=None if rate.usd_per_hour is None else rate.usd_per_hour * count,
        count=count,
        max_duration_s=max_duration_s,
        minimum_s=minimum_s,
        notes=tuple(notes),
    )


def period_start(period: str, now: float) -> float:
    """Start (UTC) of the calendar ``period`` (day, week, month) that contains ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.timestamp()
    if period == "week":
        return (day - timedelta(days=day.weekday())).timestamp()
    return day.replace(day=1).timestamp()


@dataclass
class Verdict:
    """What the limits say about a launch: refusals, warnings, and the figures behind them."""

    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # the [cost] keys that refused

    @property
    def allowed(self) -> bool:
        return not self.refusals


def status(ledger: Ledger, limits: CostConfig, *, now: float | None = None) -> dict[str, Any]:
    """The figures the limits are checked against: spent in the period, the running rate."""
    now = time.time() if now is None else now
    start = period_start(limits.budget_period, now)
    return {
        "period": limits.budget_period,
        "period_start": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
        "spent_usd": cost.spent(ledger, since=start, now=now),
        "budget_usd": limits.budget_usd,
        "running_usd_per_hour": cost.running_rate(ledger),
        "max_hourly_usd": limits.max_hourly_usd,
        "max_cost_usd": limits.max_cost_usd,
        "warn_at": limits.warn_at,
    }


def assess(
    ledger: Ledger, limits: CostConfig, launch: Estimate | None = None, *, now: float | None = None
) -> Verdict:
    """Check ``launch`` against ``limits``; without a launch, only what is already used up."""
    figures = status(ledger, limits, now=now)
    verdict = Verdict(figures=figures)
    rate = None if launch is None else launch.usd_per_hour
    extra = None if launch is None else launch.committed_usd
    if launch is not None:
        figures["launch"] = launch.to_dict()
        limited = [k for k in ("budget_usd", "max_hourly_usd", "max_cost_usd") if getattr(limits, k)]
        if rate is None and limited:
            verdict.keys.extend(limited)
            verdict.refusals.append(
                f"the launch's rate is unknown (no catalogue price), so [cost] {', '.join(limited)} "
                "cannot be checked"
            )
    spent, running = figures["spent_usd"], figures["running_usd_per_hour"]
    if limits.budget_usd is not None:
        total = spent + (extra or 0.0)
        what = f"{usd(spent)} spent this {limits.budget_period}" + (
            f" + {usd(extra)} for this launch" if extra else ""
        )
        _check(
            verdict,
            limits,
            total,
            limits.budget_usd,
            f"{what} = {usd(total)}",
            key="budget_usd",
            strict=not extra,
        )
    if limits.max_hourly_usd is not None:
        total = running + (rate or 0.0)
        what = f"{usd(running, per_hour=True)} running now"
        if rate:
            what += f" + {usd(rate, per_hour=True)} for this launch"
        _check(
            verdict,
            limits,
            total,
            limits.max_hourly_usd,
            f"{what} = {usd(total, per_hour=True)}",
            key="max_hourly_usd",
            strict=not rate,
            shown=functools.partial(usd, per_hour=True),
        )
    if limits.max_cost_usd is not None and extra is not None:
        assert launch is not None
        basis = (
            f"worst case over {duration(launch.max_duration_s)}"
            if launch.max_duration_s is not None
            else f"the {launch.minimum_s:g} s billing minimum"
        )
        _check(
            verdict,
            limits,
            extra,
            limits.max_cost_usd,
            f"{usd(extra)} ({basis})",
            key="max_cost_usd",
            strict=False,
        )
    return verdict


def _check(
    verdict: Verdict,
    limits: CostConfig,
    total: float,
    limit: float,
    what: str,
    *,
    key: str,
    strict: bool,
    shown: Callable[[float], str] = usd,
) -> None:
    """Refuse above ``limit`` (at it, too, when nothing new is added: the budget is used up)."""
    if total > limit or (strict and total >= limit):
        verdict.refusals.append(f"{what} is over [cost] {key} = {shown(limit)}")
        verdict.keys.append(key)
    elif total >= limits.warn_at * limit:
        verdict.warnings.append(f"{what} is {total / limit:.0%} of [cost] {key} = {shown(limit)}")


def guard_launch(
    ledger: Ledger,
    limits: CostConfig,
    launch: Estimate | None = None,
    *,
    override: bool = False,
    now: float | None = None,
) -> Verdict:
    """Raise :class:`BudgetError` when ``launch`` breaks a limit, unless ``override``.

    Without ``launch`` (before the plan is priced), only a budget already used up or a running
    rate already at its limit refuses.
    """
    verdict = assess(ledger, limits, launch, now=now)
    if verdict.allowed:
        return verdict
    if override:
        ledger.add_event(
            "budget.override",
            f"launched over budget ({OVERRIDE_FLAG}): " + "; ".join(verdict.refusals),
            data={"refusals": verdict.refusals},
        )
        return verdict
    keys = sorted(set(verdict.keys))
    raise BudgetError(
        "launch refused: " + "; ".join(verdict.refusals),
        operation="budget check",
        hint=f"add {OVERRIDE_FLAG} to launch anyway, or raise {', '.join(keys) or 'the limit'} in "
        "[cost] ('runctl cost budget' shows the figures, 'runctl cost estimate' the launch)",
    )


class JobBudgetWatch:
    """Watches one running job's cost against ``[cost] max_cost_usd`` (see module docstring)."""

    def __init__(self, ledger: Ledger, job_id: str, limits: CostConfig) -> None:
        self.ledger = ledger
        self.job_id = job_id
        self.limit = limits.max_cost_usd
        self.warn_at = limits.warn_at
        self.reason: str | None = None
        self._warned = False

    @property
    def active(self) -> bool:
        return self.limit is not None

    def check(self, *, now: float | None = None) -> str | None:
        """The stop reason, the first time the job's cost reaches the limit; else None."""
        if self.limit is None or self.reason is not None:
            return None
        spent = cost.job_cost(self.ledger, self.job_id, now=now)
        if spent >= self.limit:
            self.reason = f"job cost {usd(spent)} reached [cost] max_cost_usd = {usd(self.limit)}"
            log.warning("job %s: %s: stopping it (checkpoint first)", self.job_id, self.reason)
            self.ledger.add_event("budget.stop", self.reason, job_id=self.job_id, data={"cost_usd": spent})
            return self.reason
        if not self._warned and spent >= self.warn_at * self.limit:
            self._warned = True
            share = f"{spent / self.limit:.0%}"
            message = f"job cost {usd(spent)} is {share} of [cost] max_cost_usd = {usd(self.limit)}"
            log.warning("job %s: %s", self.job_id, message)
            self.ledger.add_event("budget.warning", message, job_id=self.job_id, data={"cost_usd": spent})
        return None
