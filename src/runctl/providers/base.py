"""The provider interface: what the lifecycle and the workflows need from a place to run.

Modelled on TorchX's scheduler API. A provider answers two kinds of questions:

* **Resources** (:class:`ResourceProvider`, every provider): is this ledger resource still
  there (``lookup``), make it gone (``release``), and does a state cost money (``is_billable``).
  That is all :class:`runctl.core.lifecycle.Lifecycle` needs to clean up and to reconcile.
* **Compute** (:class:`ComputeProvider`, the clouds): ``plan`` turns a :class:`MachineSpec` into a
  priced, printable :class:`LaunchPlan` without calling any mutating API (so a dry run and a
  budget check are free); ``apply`` creates the plan's machines — intent first, one ledger row
  per machine, ``count`` machines for multi-node jobs — and returns them; ``start`` runs one
  command (the agent) on a machine.

Contracts every implementation keeps:

1. ``release`` is idempotent: releasing something already gone returns its final state.
2. ``release`` verifies: it returns only once the provider reports the resource gone, and raises
   :class:`runctl.core.errors.ResourceError` otherwise, so the ledger never says "gone" early.
3. ``lookup`` of an ``intent`` row finds the resource by the row's client token / tags, so a crash
   between the create call and the ledger update is recoverable.
4. Library exceptions never escape: they are classified into :mod:`runctl.core.errors`.

Discovery (``resources reconcile`` / ``cleanup``): a provider that can list what it made reports
it as :class:`ManagedResource` records carrying runctl's tags (the ``TAG_*`` names below; RunPod,
which has no tags, derives ``runctl:resource`` from the pod's name).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runctl.core.ledger import Resource

TAG_MANAGED = "runctl:managed"
TAG_RESOURCE = "runctl:resource"
TAG_KIND = "runctl:kind"
TAG_USER = "runctl:user"
TAG_JOB = "runctl:job"
TAG_PROTECT = "runctl:protect"
TAG_PERSISTENT = "runctl:persistent"

#: An ``intent`` row younger than this may belong to a create still in flight in another
#: process: reconcile reports it but does not mark it ``create_failed`` (see
#: :mod:`runctl.workflows.reconcile`).
INTENT_GRACE_S = 600.0


class ResourceProvider(ABC):
    """What the lifecycle needs from any provider."""

    name: str

    @abstractmethod
    def lookup(self, resource: Resource) -> str | None:
        """The resource's current state at the provider, or None if it does not exist."""

    @abstractmethod
    def release(self, resource: Resource) -> str:
        """Make the resource gone (idempotent, verified); returns the final state."""

    @abstractmethod
    def is_billable(self, kind: str, state: str) -> bool:
        """Whether a resource of ``kind`` costs money while in ``state``."""


@dataclass(frozen=True)
class MachineSpec:
    """What a job asks for, provider-neutral. ``count`` > 1 is a multi-node job."""

    instance_type: str | None = None
    gpu_type: str | None = None
    gpu_count: int = 1
    spot: bool = False
    count: int = 1
    zone: str | None = None
    image: str | None = None
    disk_gb: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchPlan:
    """A priced, printable plan: what ``apply`` would create and what it costs per hour."""

    provider: str
    spec: MachineSpec
    rate_usd_per_hour: float | None
    request: Mapping[str, Any]
    notes: Sequence[str] = ()

    @property
    def total_rate_usd_per_hour(self) -> float | None:
        return None if self.rate_usd_per_hour is None else self.rate_usd_per_hour * self.spec.count


@dataclass(frozen=True)
class Machine:
    """One machine created for a job."""

    resource_id: str
    cloud_id: str
    state: str
    zone: str | None = None
    address: str | None = None


class ComputeProvider(ResourceProvider):
    """A provider that creates machines and starts commands on them.

    ``command_at_creation``: the machine's command is part of its creation (a container's
    start command, RunPod) rather than sent to a running machine (SSM, EC2): the caller puts
    ``command`` and ``env`` in ``MachineSpec.extra`` and creates a new machine per command; such
    machines also need the storage credentials in ``env``, having no instance role.
    """

    command_at_creation: bool = False

    @abstractmethod
    def plan(self, spec: MachineSpec) -> LaunchPlan:
        """Price and validate ``spec`` without creating anything."""

    @abstractmethod
    def apply(self, plan: LaunchPlan, *, job_id: str | None = None) -> list[Machine]:
        """Create the plan's machines (intent first); on failure release what was created."""

    @abstractmethod
    def start(self, machine: Machine, argv: Sequence[str], env: Mapping[str, str]) -> str:
        """Start ``argv`` on ``machine`` with ``env``; returns a handle (e.g. an SSM command id)."""

    def refresh_rate(self, resource: Resource) -> float | None:
        """Re-read the price of a running machine whose price moves (spot); when it changed,
        record it (``Ledger.set_rate``) and return it. None: unchanged or unknown. Default:
        prices that never move."""
        return None


@dataclass(frozen=True)
class Rate:
    """An hourly rate for a resource found in the cloud, and where it came from."""

    usd_per_hour: float | None
    note: str | None = None


@dataclass(frozen=True)
class ManagedResource:
    """A runctl-made resource as the cloud sees it (what reconcile compares with the ledger)."""

    provider: str
    kind: str
    cloud_id: str
    state: str
    zone: str | None
    tags: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    region: str | None = None

    @property
    def ledger_id(self) -> str | None:
        return self.tags.get(TAG_RESOURCE) or None

    @property
    def user(self) -> str | None:
        return self.tags.get(TAG_USER) or None

    @property
    def job_id(self) -> str | None:
        return self.tags.get(TAG_JOB) or None

    @property
    def protected(self) -> bool:
        return self.tags.get(TAG_PROTECT, "").lower() == "true"

    @property
    def persistent(self) -> bool:
        return self.tags.get(TAG_PERSISTENT, "").lower() == "true"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ledger_id": self.ledger_id, "protected": self.protected}
