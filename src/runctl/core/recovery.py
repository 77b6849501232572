"""Recovery as policy: what a remote job does when an attempt ends, and how long it may wait.

The policy is the ``[recovery]`` config section (:class:`runctl.core.config.RecoveryConfig`),
overridden per job by the train commands' options and stored with the job, so ``runctl jobs
wait`` reattaches with the same rules. Each event has its own rule and its own count:

* **preempted** (spot notice, OS shutdown, machine gone): resumed on a replacement from the
  latest checkpoint when the job was submitted with ``--auto-resume``; after
  ``max_preemptions`` spot preemptions the replacement is on-demand (preemptions are never
  refused: on-demand is not preempted, so the count cannot run away).
* **failed** (exit code not 0): an exit code in ``restart_on_exit_codes`` restarts without using
  ``max_restarts``; such *free* restarts are bounded by :data:`FREE_RESTARTS_CEILING` in a row
  (a deterministic crash with a "flaky" code must not bill forever when no cap is set); any
  other code restarts while ``max_restarts`` lasts.
* **hung** (the agent's watchdog: no progress): restarted while ``max_hang_restarts`` lasts.
* **capacity** (no zone or market could place the machine): with ``capacity_wait`` the job waits
  ``pending`` and tries again with exponential backoff and full jitter
  (:func:`capacity_retry`, the project's :class:`~runctl.core.retry.RetryPolicy`); past the
  wait it ends ``no_capacity``.
* **overall caps**: ``max_total_duration`` (wall clock from submission, over all attempts and
  waits) and ``[cost] max_cost_usd``; reaching one stops the job gracefully and nothing is
  restarted after it (outcomes ``time_limit`` and ``cancelled``).

Every decision is a ledger event with its reason (``job.preemption``, ``job.restart``,
``recovery.end``, ``recovery.capacity_wait``, ``recovery.time_limit``; ``jobs show`` lists
them). The counts are rebuilt from those events (:meth:`Recovery.from_events`), so a controller
that reattaches continues the count instead of starting over.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from runctl.core.config import RecoveryConfig
from runctl.core.retry import RetryPolicy
from runctl.core.units import duration

#: Restarts for an exit code in ``restart_on_exit_codes`` allowed one after another.
FREE_RESTARTS_CEILING = 10
#: Event kinds that record a recovery decision (``jobs show`` lists them).
DECISION_EVENTS = frozenset(
    {"job.preemption", "job.restart", "recovery.end", "recovery.capacity_wait", "recovery.time_limit"}
)
#: The job state of a job stopped at ``max_total_duration``.
TIME_LIMIT = "time_limit"

Action = Literal["resume", "restart", "end"]
Counter = Literal["preemptions", "restarts", "free_restarts", "hang_restarts"]


@dataclass(frozen=True)
class Decision:
    """What to do after an attempt ended: ``resume`` (a new machine), ``restart`` (the same
    machine when it is still there), or ``end``; ``reason`` is what the ledger event says."""

    action: Action
    reason: str
    on_demand: bool = False  # the replacement falls back to on-demand
    counted: Counter | None = None

    @property
    def event_kind(self) -> str:
        return {"resume": "job.preemption", "restart": "job.restart"}.get(self.action, "recovery.end")

    def event_data(self, attempt: int) -> dict[str, Any]:
        return {"attempt": attempt, "action": self.action, "counted": self.counted, "reason": self.reason}


@dataclass
class Recovery:
    """One job's counts under its policy, and the decision after each attempt."""

    policy: RecoveryConfig
    preemptions: int = 0
    restarts: int = 0
    free_restarts: int = 0  # in a row: a counted restart or a resume resets it
    hang_restarts: int = 0

    @classmethod
    def from_events(cls, policy: RecoveryConfig, events: Iterable[Any]) -> Recovery:
        """The counts as the job's decision events (oldest first) left them."""
        recovery = cls(policy)
        for event in events:
            counted = (getattr(event, "data", None) or {}).get("counted")
            if event.kind in ("job.preemption", "job.restart"):
                recovery._count(counted or ("preemptions" if event.kind == "job.preemption" else "restarts"))
        return recovery

    def _count(self, counter: str) -> None:
        if counter == "free_restarts":
            self.free_restarts += 1
            return
        self.free_restarts = 0
        if counter in ("preemptions", "restarts", "hang_restarts"):
            setattr(self, counter, getattr(self, counter) + 1)

    def after(
        self,
        state: str,
        exit_code: int | None,
        *,
        auto_resume: bool,
        spot: bool,
        elapsed: float,
    ) -> Decision:
        """The decision after an attempt ended in ``state``; ``elapsed`` is the job's wall-clock
        time so far (``max_total_duration``). Counts what it decides."""
        decision = self._decide(state, exit_code, auto_resume=auto_resume, spot=spot, elapsed=elapsed)
        if decision.counted is not None:
            self._count(decision.counted)
        return decision

    def _decide(
        self, state: str, exit_code: int | None, *, auto_resume: bool, spot: bool, elapsed: float
    ) -> Decision:
        policy = self.policy
        if state not in ("preempted", "failed", "hung"):
            return Decision("end", f"attempt ended {state}")
        if policy.max_total_duration is not None and elapsed >= policy.max_total_duration:
            return Decision(
                "end", f"{state}; max_total_duration ({duration(policy.max_total_duration)}) reached"
            )
        if state == "preempted":
            if not auto_resume:
                return Decision("end", "preempted; not resumed: the job was submitted without --auto-resume")
            number = self.preemptions + 1
            on_demand = spot and number > policy.max_preemptions
            why = f"preemption {number}: resumed from the latest checkpoint"
            if on_demand:
                why += f"; after max_preemptions ({policy.max_preemptions}) the replacement is on-demand"
            return Decision("resume", why, on_demand=on_demand, counted="preemptions")
        if state == "hung":
            if self.hang_restarts < policy.max_hang_restarts:
                number = self.hang_restarts + 1
                return Decision(
                    "restart",
                    f"hung: hang restart {number} of max_hang_restarts ({policy.max_hang_restarts})",
                    counted="hang_restarts",
                )
            return Decision("end", f"hung; max_hang_restarts ({policy.max_hang_restarts}) used up")
        if exit_code is not None and exit_code in policy.restart_on_exit_codes:
            if self.free_restarts < FREE_RESTARTS_CEILING:
                return Decision(
                    "restart",
                    f"exit code {exit_code} is in restart_on_exit_codes: restarted, max_restarts not used",
                    counted="free_restarts",
                )
            return Decision(
                "end",
                f"exit code {exit_code} is in restart_on_exit_codes but failed "
                f"{FREE_RESTARTS_CEILING} times in a row",
            )
        if self.restarts < policy.max_restarts:
            number = self.restarts + 1
            return Decision(
                "restart",
                f"failed (exit code {exit_code}): restart {number} of max_restarts ({policy.max_restarts})",
                counted="restarts",
            )
        return Decision(
            "end", f"failed (exit code {exit_code}); max_restarts ({policy.max_restarts}) used up"
        )


def capacity_retry(capacity_wait: float) -> RetryPolicy:
    """Backoff for placement refused for capacity: the first wait is at most a 60th of
    ``capacity_wait`` (1 s to 30 s), doubling up to a sixth of it (at most 10 minutes), full
    jitter, never past ``capacity_wait``."""
    first = min(30.0, max(1.0, capacity_wait / 60))
    return RetryPolicy(
        max_attempts=100_000,
        initial_delay=first,
        max_delay=max(first, min(600.0, capacity_wait / 6)),
        deadline=capacity_wait,
        name="placement (waiting for capacity)",
    )
