"""The provider contract: everything the workflows and the lifecycle need from a place to run.

Modelled on TorchX's scheduler API: a small, provider-neutral request (:class:`LaunchOptions` →
:class:`MachineSpec`), a priced plan that is free to make (:meth:`ComputeProvider.plan`), and an
``apply`` that acts on it. Nothing above ``providers/`` names a provider or reads a provider's
private plan fields: a plan describes itself (:attr:`LaunchPlan.what`, :attr:`LaunchPlan.tries`,
:meth:`LaunchPlan.to_dict`). :mod:`runctl.providers.registry` is the one place providers are
built; a new provider is one folder under ``providers/`` plus one line there.

Every :class:`ResourceProvider` keeps these behaviours:

1. ``lookup(resource)`` returns the resource's state at the provider, or None when it does not
   exist; for an ``intent`` row it finds the resource by the row's client token / tag (RunPod: its
   name), so a crash between the create call and the ledger update is recoverable.
2. ``release(resource)`` is idempotent (something already gone returns its final state) and
   verified: it returns only once the provider reports the resource gone, and raises
   :class:`~runctl.core.errors.ResourceError` otherwise, so the ledger never says "gone" early.
3. ``is_billable(kind, state)`` says whether a state costs money; ``billing_minimum_s(kind)``
   is the shortest period the provider bills (recorded with each resource, so cost reports need
   no provider).
4. Library exceptions never escape: they are classified into :mod:`runctl.core.errors`.

A :class:`ComputeProvider` (a cloud) also keeps these:

5. ``spec(options)`` builds a :class:`MachineSpec` from the user's options and the provider's
   config defaults; it validates what it can without a request.
6. ``plan(spec)`` validates and prices with read-only calls and returns a :class:`LaunchPlan`:
   printable, priced, free of side effects, so a dry run and a budget check cost nothing.
7. ``apply(plan, job_id=…)`` creates the plan's ``count`` machines, intent first (one ledger row
   each), and on a failed step releases what it created before raising.
8. ``start(machine, argv, env)`` starts one command on a running machine and returns a handle
   (``start_report(machine, handle)`` says what became of it, where the provider keeps that);
   a provider whose machines take their command at creation (``command_at_creation``) raises
   :class:`~runctl.core.errors.ResourceError` instead and takes ``command``/``env`` through
   ``MachineSpec.extra``.
9. ``stop_refusal(spec)`` says why a machine of ``spec`` cannot be stopped (None when it can);
   ``stop(resource)`` stops a machine, keeping its disk, and returns the updated row (verified
   ``stopped``); ``restart(resource)`` starts a stopped machine again. A provider that cannot
   raises :class:`~runctl.core.errors.UnsupportedError`, and the remote workflow refuses
   ``--on-interrupt stop`` for it before launching anything.
10. ``catalogue_rate(spec)`` prices a spec from the shipped catalogue alone (no request, no
    credentials): ``cost estimate --offline``; ``refresh_prices()`` renews that catalogue from the
    provider's live price API (``cost prices --refresh``).
11. Discovery, for ``resources reconcile`` / ``cleanup``: ``find(resource)`` (by cloud id, or by
    tag for an ``intent`` row), ``list_managed()`` (every live resource carrying runctl's tags —
    the ``TAG_*`` names below; RunPod, which has no tags, derives them from the pod name),
    ``rate_for(found)`` (the :class:`Rate` to record for a resource found in the cloud),
    ``retag(found, ledger_id)`` and ``gone_state(kind)``.
12. ``machine_kinds`` are the ledger kinds that are machines (what a job runs on) and
    ``lost_states`` the machine states in which a job's machine no longer runs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from runctl.core.errors import UnsupportedError
from runctl.core.ledger import Resource
from runctl.core.prices import Rate

__all__ = [
    "INTENT_GRACE_S",
    "ComputeProvider",
    "LaunchOptions",
    "LaunchPlan",
    "Machine",
    "MachineSpec",
    "ManagedResource",
    "Rate",
    "ResourceProvider",
]

if TYPE_CHECKING:
    from collections.abc import Callable

    from runctl.core.config import Config
    from runctl.core.ledger import Ledger

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


@dataclass(frozen=True)
class LaunchOptions:
    """What a user may ask of any cloud, by need or by name (the CLI's options, provider-neutral).

    A provider reads the fields that mean something to it and says so when one cannot apply
    (``spec`` raises :class:`~runctl.core.errors.ValidationError`); None means "the config's
    default".
    """

    instance_type: str | None = None
    gpus: Sequence[str] = ()
    gpu_count: int | None = None
    spot: bool | None = None
    fallback: bool | None = None
    max_price: float | None = None  # AWS: spot max price per hour; RunPod: bid per GPU-hour
    zone: str | None = None  # AWS zone; RunPod cloud (secure, community, all)
    image: str | None = None
    iam_instance_profile: str | None = None
    data_volume: str | None = None
    disk_gb: int | None = None
    volume_gb: int | None = None
    name: str | None = None
    count: int = 1


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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineSpec:
        return cls(**{**data, "extra": dict(data.get("extra") or {})})


@dataclass(frozen=True)
class LaunchPlan:
    """A priced, printable plan: what ``apply`` would create and what it costs per hour.

    ``what`` names the launch in one line ("1 x g5.xlarge (spot in us-east-1)"), ``tries`` lists
    the placements ``apply`` walks in order, ``kind`` is the ledger kind of the machines and
    ``billing_minimum_s`` the shortest period each is billed; ``request`` is the provider's own
    printable request (secrets masked) and is read only by that provider.
    """

    provider: str
    spec: MachineSpec
    rate_usd_per_hour: float | None
    request: Mapping[str, Any]
    notes: Sequence[str] = ()
    what: str = ""
    tries: Sequence[str] = ()
    kind: str = "instance"
    billing_minimum_s: float = 0.0

    @property
    def total_rate_usd_per_hour(self) -> float | None:
        return None if self.rate_usd_per_hour is None else self.rate_usd_per_hour * self.spec.count

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``--dry-run -o json`` prints it: its summary and the provider's request."""
        return {
            "provider": self.provider,
            "what": self.what,
            "tries": list(self.tries),
            "rate_usd_per_hour": self.rate_usd_per_hour,
            "notes": list(self.notes),
            "request": dict(self.request),
        }


@dataclass(frozen=True)
class Machine:
    """One machine created for a job."""

    resource_id: str
    cloud_id: str
    state: str
    zone: str | None = None
    address: str | None = None

    @classmethod
    def of(cls, resource: Resource) -> Machine:
        """The machine a ledger row stands for."""
        return cls(resource.id, resource.cloud_id or "", resource.state, resource.zone)


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


class ResourceProvider(ABC):
    """What the lifecycle needs from any provider (behaviours 1–4 of the module docstring)."""

    name: ClassVar[str]

    @abstractmethod
    def lookup(self, resource: Resource) -> str | None:
        """The resource's current state at the provider, or None if it does not exist."""

    @abstractmethod
    def release(self, resource: Resource) -> str:
        """Make the resource gone (idempotent, verified); returns the final state."""

    @abstractmethod
    def is_billable(self, kind: str, state: str) -> bool:
        """Whether a resource of ``kind`` costs money while in ``state``."""

    def billing_minimum_s(self, kind: str) -> float:
        """The shortest period a ``kind`` resource is billed for (default: per second, none)."""
        return 0.0


class ComputeProvider(ResourceProvider):
    """A cloud: creates machines, starts commands on them, finds what it made (behaviours 5–12).

    ``command_at_creation``: the machine's command is part of its creation (a container's start
    command, RunPod) rather than sent to a running machine (SSM, EC2): the caller puts ``command``
    and ``env`` in ``MachineSpec.extra`` and creates a new machine per command; such machines
    also need the storage credentials in ``env``, having no instance role.
    """

    command_at_creation: ClassVar[bool] = False
    machine_kinds: ClassVar[frozenset[str]] = frozenset({"instance"})
    lost_states: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def from_config(
        cls, ledger: Ledger, config: Config, *, progress: Callable[[str], None] | None = None
    ) -> ComputeProvider:
        """The provider as the CLI builds it, from the loaded configuration."""

    def configured(self) -> bool:
        """Whether the provider has what it needs to be asked anything (credentials, a region);
        reconcile skips an unconfigured provider that the ledger has nothing of."""
        return True

    @abstractmethod
    def spec(self, options: LaunchOptions) -> MachineSpec:
        """A MachineSpec from the user's options, defaults from the provider's config."""

    @abstractmethod
    def plan(self, spec: MachineSpec) -> LaunchPlan:
        """Price and validate ``spec`` without creating anything."""

    @abstractmethod
    def apply(
        self,
        plan: LaunchPlan,
        *,
        job_id: str | None = None,
        allow_over_limit: bool = False,
        wait: bool = False,
    ) -> list[Machine]:
        """Create the plan's machines (intent first); on failure release what was created.
        ``allow_over_limit`` passes a provider's own running-machine guard; ``wait`` returns
        only once they run."""

    @abstractmethod
    def start(self, machine: Machine, argv: Sequence[str], env: Mapping[str, str]) -> str:
        """Start ``argv`` on ``machine`` with ``env``; returns a handle (e.g. an SSM command id)."""

    def start_report(self, machine: Resource, handle: str) -> str:
        """What the provider keeps of a start command (``handle`` from :meth:`start`): its status
        and the end of its output, for a job whose agent never reported. Default: nothing."""
        return f"{self.name} keeps no log of the start command through its API: logs unavailable"

    @abstractmethod
    def catalogue_rate(self, spec: MachineSpec) -> tuple[Rate, str]:
        """The catalogue's on-demand rate of one machine of ``spec`` and a one-line ``what``."""

    @abstractmethod
    def refresh_prices(self, *, region: str | None = None, item: str | None = None) -> tuple[int, str]:
        """Ask the provider's live price API and cache the answers over the shipped catalogue
        (:func:`runctl.core.prices.store`); ``region`` and ``item`` narrow what is asked. Returns
        how many prices were refreshed and where they came from."""

    def stop_refusal(self, spec: MachineSpec) -> str | None:
        """Why a machine of ``spec`` cannot be stopped and started again (None: it can)."""
        return f"{self.name} machines cannot be stopped and started again"

    def stop(self, resource: Resource) -> Resource:
        """Stop a machine, keeping its disk; returns the row once the provider says ``stopped``."""
        raise UnsupportedError(
            self.stop_refusal(MachineSpec()) or f"{self.name} cannot stop {resource.id}",
            resource_id=resource.id,
            hint="use --on-interrupt terminate or detach",
        )

    def restart(self, resource: Resource) -> Resource:
        """Start a stopped machine again; returns the row once it is running."""
        raise UnsupportedError(
            f"{self.name} cannot start {resource.id} again",
            resource_id=resource.id,
            hint="resume the job on a new machine: runctl jobs wait JOB --auto-resume",
        )

    def refresh_rate(self, resource: Resource) -> float | None:
        """Re-read the price of a running machine whose price moves (spot); when it changed,
        record it (``Ledger.set_rate``) and return it. None: unchanged or unknown. Default:
        prices that never move."""
        return None

    # -- discovery (resources reconcile / cleanup) ---------------------------------------------

    @abstractmethod
    def find(self, resource: Resource) -> ManagedResource | None:
        """What the cloud has for a ledger row (by cloud id, or by tag for an intent row)."""

    @abstractmethod
    def list_managed(self) -> list[ManagedResource]:
        """Every live resource carrying runctl's tags."""

    @abstractmethod
    def rate_for(self, found: ManagedResource) -> Rate:
        """The rate to record for a resource found in the cloud (reconcile cannot see a plan)."""

    @abstractmethod
    def retag(self, found: ManagedResource, ledger_id: str) -> None:
        """Point a resource's ``runctl:resource`` tag at its (new) ledger row."""

    @abstractmethod
    def gone_state(self, kind: str) -> str:
        """The state a ``kind`` resource ends in (terminated, deleted)."""
