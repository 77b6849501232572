"""An in-memory cloud: a ComputeProvider that keeps its machines in a dict.

It implements the whole provider contract (:mod:`runctl.providers.base`) with no network, so the
workflows (:class:`~runctl.workflows.remote.RemoteTrainer`, :class:`~runctl.core.lifecycle.Lifecycle`,
the launch path) can be tested as a library, beside the moto and simulator tests that prove the
real providers. ``start`` runs nothing: it records the command, and a test plays the agent by
writing the job's ``status.json``. ``stoppable`` decides whether machines can be stopped;
``fail_release`` names cloud ids whose release fails, as a cloud that refuses would;
``no_capacity`` refuses every placement for capacity, ``refuse_capacity`` the next N.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runctl.core.config import Config
from runctl.core.errors import CapacityError, ResourceError
from runctl.core.ledger import Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.providers.base import (
    ComputeProvider,
    LaunchOptions,
    LaunchPlan,
    Machine,
    MachineSpec,
    ManagedResource,
    Rate,
)


@dataclass
class MemoryMachine:
    cloud_id: str
    resource_id: str
    state: str
    spot: bool
    commands: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)


class MemoryProvider(ComputeProvider):
    """Machines in a dict, priced at ``rate`` per hour; see the module docstring."""

    name = "memory"
    lost_states = frozenset({"terminated", "stopped"})

    def __init__(self, ledger: Ledger, *, rate: float = 1.0, stoppable: bool = True) -> None:
        self.ledger = ledger
        self.rate = rate
        self.stoppable = stoppable
        self.machines: dict[str, MemoryMachine] = {}
        self.applied: list[MachineSpec] = []
        self.fail_release: set[str] = set()
        self.no_capacity = False
        self.refuse_capacity = 0  # placements still to refuse for capacity (then granted)
        self.lifecycle = Lifecycle(ledger, {self.name: self})

    @classmethod
    def from_config(
        cls, ledger: Ledger, config: Config, *, progress: Callable[[str], None] | None = None
    ) -> MemoryProvider:
        return cls(ledger)

    def spec(self, options: LaunchOptions) -> MachineSpec:
        return MachineSpec(instance_type=options.instance_type or "mem.small", spot=bool(options.spot))

    def plan(self, spec: MachineSpec) -> LaunchPlan:
        market = "spot" if spec.spot else "on-demand"
        return LaunchPlan(
            provider=self.name,
            spec=spec,
            rate_usd_per_hour=self.rate,
            request={"market": market},
            what=f"{spec.count} x {spec.instance_type} ({market})",
            tries=(market,),
            billing_minimum_s=self.billing_minimum_s("instance"),
        )

    def apply(
        self,
        plan: LaunchPlan,
        *,
        job_id: str | None = None,
        allow_over_limit: bool = False,
        wait: bool = False,
    ) -> list[Machine]:
        made = []
        for _ in range(plan.spec.count):
            with self.lifecycle.track(
                self.name, "instance", job_id=job_id, spec={"spot": plan.spec.spot}
            ) as row:
                if self.no_capacity or self.refuse_capacity > 0:
                    self.refuse_capacity -= 1
                    self.ledger.transition(row.id, "create_failed", billable=False)
                    raise CapacityError("no capacity in memory", provider=self.name)
                cloud_id = f"m-{len(self.machines) + 1}"
                self.machines[cloud_id] = MemoryMachine(cloud_id, row.id, "running", plan.spec.spot)
                self.lifecycle.created(row, cloud_id=cloud_id, state="running", rate_usd_per_hour=self.rate)
            self.applied.append(plan.spec)
            made.append(Machine(row.id, cloud_id, "running"))
        return made

    def start(self, machine: Machine, argv: Sequence[str], env: Mapping[str, str]) -> str:
        self.machines[machine.cloud_id].commands.append((list(argv), dict(env)))
        return f"cmd-{machine.cloud_id}-{len(self.machines[machine.cloud_id].commands)}"

    def catalogue_rate(self, spec: MachineSpec) -> tuple[Rate, str]:
        return Rate(self.rate, "catalogue", "2026-11-01"), f"{spec.count} x {spec.instance_type}"

    def refresh_prices(self, *, region: str | None = None, item: str | None = None) -> tuple[int, str]:
        return 0, "memory has no price API"

    def stop_refusal(self, spec: MachineSpec) -> str | None:
        if not self.stoppable:
            return "memory machines cannot be stopped"
        return "a spot machine cannot be stopped" if spec.spot else None

    def _set(self, resource: Resource, state: str) -> Resource:
        self.machines[resource.cloud_id or ""].state = state
        return self.lifecycle.transition(resource, state)

    def stop(self, resource: Resource) -> Resource:
        if self.stop_refusal(replace(MachineSpec(), spot=self.machines[resource.cloud_id or ""].spot)):
            return super().stop(resource)
        return self._set(resource, "stopped")

    def restart(self, resource: Resource) -> Resource:
        return self._set(resource, "running")

    def billing_minimum_s(self, kind: str) -> float:
        return 60.0

    def lookup(self, resource: Resource) -> str | None:
        machine = self.machines.get(resource.cloud_id or "")
        return None if machine is None else machine.state

    def release(self, resource: Resource) -> str:
        if resource.cloud_id in self.fail_release:
            raise ResourceError(f"{resource.cloud_id} refused to terminate", resource_id=resource.id)
        if resource.cloud_id in self.machines:
            self.machines[resource.cloud_id].state = "terminated"
        return "terminated"

    def is_billable(self, kind: str, state: str) -> bool:
        return state == "running"

    def find(self, resource: Resource) -> ManagedResource | None:
        machine = self.machines.get(resource.cloud_id or "")
        if machine is None:
            return None
        return ManagedResource(self.name, "instance", machine.cloud_id, machine.state, None)

    def list_managed(self) -> list[ManagedResource]:
        return [
            ManagedResource(self.name, "instance", m.cloud_id, m.state, None) for m in self.machines.values()
        ]

    def rate_for(self, found: ManagedResource) -> Rate:
        return Rate(self.rate, "memory")

    def retag(self, found: ManagedResource, ledger_id: str) -> None:
        return None

    def gone_state(self, kind: str) -> str:
        return "terminated"

    def commands(self) -> list[list[str]]:
        """Every command started, in order, over all machines."""
        return [argv for m in self.machines.values() for argv, _ in m.commands]

    def describe(self) -> dict[str, Any]:
        return {k: m.state for k, m in self.machines.items()}
