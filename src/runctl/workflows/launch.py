"""The one launch path: precheck → plan → verdict → apply.

Every machine runctl creates goes through here — ``aws create``, ``runpod create``, ``cost
estimate`` (which stops after the verdict) and every attempt of a remote job — so the budget,
the estimate line and the refusal read the same wherever a launch starts:

1. **precheck** — before any request: a budget already used up, or a running rate already at
   its limit, refuses (:class:`~runctl.core.errors.BudgetError`, exit 79) unless overridden. A dry
   run skips it (it only reports).
2. **plan** — :meth:`ComputeProvider.plan`: validated and priced with read-only calls.
3. **verdict** — the plan's :class:`~runctl.core.budget.Estimate` (its $/h, and the worst case over
   ``max_duration_s``) against the ``[cost]`` limits: refused, unless ``over_budget`` (recorded as
   a ``budget.override`` event); a dry run gets the verdict without the refusal.
4. **apply** — :meth:`ComputeProvider.apply`: intent first, tagged, released on a failed step.

``say`` receives the lines a person should see (the estimate, warnings, overrides); callers that
print JSON pass nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runctl.core import budget
from runctl.core.budget import Estimate, Verdict
from runctl.core.config import Config
from runctl.core.ledger import Ledger
from runctl.providers.base import ComputeProvider, LaunchPlan, Machine, MachineSpec

Say = Callable[[str], None]


def _quiet(_text: str) -> None:
    return None


@dataclass(frozen=True)
class Launch:
    """A launch that passed its checks (or, for a dry run, was only assessed)."""

    provider: ComputeProvider
    plan: LaunchPlan
    estimate: Estimate
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        """The plan, its estimate and the budget's verdict, as ``--output json`` prints them."""
        return {
            **self.plan.to_dict(),
            "estimate": self.estimate.to_dict(),
            "budget": {
                "allowed": self.verdict.allowed,
                "refusals": self.verdict.refusals,
                "warnings": self.verdict.warnings,
            },
        }


def precheck(ledger: Ledger, config: Config, *, over_budget: bool = False) -> None:
    """Refuse before any request when a budget is already used up (BudgetError, exit 79)."""
    budget.guard_launch(ledger, config.cost, override=over_budget)


def estimate(plan: LaunchPlan, *, max_duration_s: float | None = None) -> Estimate:
    """The estimate of a priced plan (the plan names itself and states its billing minimum)."""
    return Estimate(
        provider=plan.provider,
        what=plan.what or f"{plan.spec.count} x {plan.provider} machine",
        usd_per_hour=plan.total_rate_usd_per_hour,
        count=plan.spec.count,
        max_duration_s=max_duration_s,
        minimum_s=plan.billing_minimum_s,
        notes=tuple(plan.notes),
    )


def offline_estimate(
    provider: ComputeProvider, spec: MachineSpec, config: Config, *, max_duration_s: float | None = None
) -> Estimate:
    """An estimate from the shipped price catalogue alone: no request, no credentials."""
    rate, what = provider.catalogue_rate(spec)
    kind = next(iter(sorted(provider.machine_kinds)))
    return budget.catalogue_estimate(
        provider.name,
        rate,
        what,
        count=spec.count,
        spot=spec.spot,
        minimum_s=provider.billing_minimum_s(kind),
        max_duration_s=max_duration_s,
        stale_days=config.cost.price_stale_days,
    )


def judge(
    ledger: Ledger,
    config: Config,
    launch: Estimate,
    *,
    over_budget: bool = False,
    dry_run: bool = False,
    say: Say = _quiet,
) -> Verdict:
    """Show the estimate and check it against ``[cost]``: refused (BudgetError) unless
    ``over_budget``; a dry run only reports what would happen."""
    say(launch.line())
    if dry_run:
        verdict = budget.assess(ledger, config.cost, launch)
    else:
        verdict = budget.guard_launch(ledger, config.cost, launch, override=over_budget)
    for warning in verdict.warnings:
        say(f"warning: {warning}")
    for refusal in verdict.refusals:
        verb = "would be refused" if dry_run else f"launching over budget ({budget.OVERRIDE_FLAG})"
        say(f"budget: {verb}: {refusal}")
    return verdict


def prepare(
    provider: ComputeProvider,
    spec: MachineSpec,
    ledger: Ledger,
    config: Config,
    *,
    max_duration_s: float | None = None,
    over_budget: bool = False,
    dry_run: bool = False,
    say: Say = _quiet,
) -> Launch:
    """Steps 1–3: precheck, plan, verdict. Nothing is created and nothing is written, except a
    ``budget.override`` event when a refused launch goes ahead."""
    if not dry_run:
        precheck(ledger, config, over_budget=over_budget)
    plan = provider.plan(spec)
    launch = estimate(plan, max_duration_s=max_duration_s)
    verdict = judge(ledger, config, launch, over_budget=over_budget, dry_run=dry_run, say=say)
    return Launch(provider, plan, launch, verdict)


def apply(
    launch: Launch, *, job_id: str | None = None, allow_over_limit: bool = False, wait: bool = False
) -> list[Machine]:
    """Step 4: create the plan's machines (see :meth:`ComputeProvider.apply`)."""
    return launch.provider.apply(launch.plan, job_id=job_id, allow_over_limit=allow_over_limit, wait=wait)
