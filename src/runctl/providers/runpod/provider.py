"""The RunPod provider: GPU pods as ledger resources, with the same promises as EC2 instances.

Contract (see :mod:`runctl.providers.base`), RunPod's way:

1. ``plan`` prices a :class:`MachineSpec` from ``gpuTypes`` (one read, no mutation) into an
   ordered list of *offers* — each requested GPU type in each allowed cloud (``--cloud all`` is
   secure first, then community), at the on-demand price or, for ``spot``, at the bid (default:
   the current spot price; a bid under it is refused before anything is sent).
2. ``apply`` writes the intent row first (:meth:`Lifecycle.track`), names the pod
   ``runctl-<resource id>[-<label>]`` (RunPod has no tags: the name is the tag), then sends
   ``podFindAndDeployOnDemand`` / ``podRentInterruptable`` for the first offer. A capacity
   error ("There are no longer any instances available…") moves on to the next offer at once;
   when none is left the row becomes ``create_failed`` and a :class:`CapacityError` lists what
   was tried. The ledger rate is the pod's ``costPerHr``.
3. ``release`` sends ``podTerminate`` and returns only once RunPod no longer reports the pod
   (idempotent: a pod already gone is ``terminated``); otherwise :class:`ResourceError`.
4. ``lookup`` of an ``intent`` row finds its pod by name, so a crash between the create call and
   the ledger update is recoverable (:meth:`reconcile`, ``resources reconcile``).

Billing choice: a pod is billable (its ``costPerHr`` accrues) in ``created``/``running``/
``restarting``. A stopped (``exited``) pod is **not** billable in the ledger, although RunPod
keeps charging its volume disk at about $0.20 per GB-month: a few cents a day against dollars an
hour of GPU, on a separate RunPod line. The ledger has one rate per resource, so rather than
mis-cost the pod, ``runctl runpod stop``/``status`` print that storage estimate
(:func:`stopped_volume_usd_per_month`), and ``terminate`` ends it.

Commands: RunPod runs a pod's command from its creation (``dockerArgs``); there is no "run this
on a running pod" call. :func:`pod_start_command` turns an argv + env into that ``dockerArgs`` +
``env`` pair; a caller (the ``train`` workflow) passes them through ``MachineSpec.extra``
(``command``, ``env``). Env values are secrets (storage credentials): they go to RunPod in the
create call's variables and nowhere else — not in the plan's printable request, not in the
ledger spec, and pods are never queried for their env.
"""

from __future__ import annotations

import difflib
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runctl.core.config import Config, RunpodConfig
from runctl.core.errors import (
    AuthError,
    CapacityError,
    NotFoundError,
    QuotaError,
    ResourceError,
    RunctlError,
    ValidationError,
)
from runctl.core.ledger import Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.retry import RetryPolicy
from runctl.core.testhooks import crash_point
from runctl.providers.base import (
    TAG_MANAGED,
    TAG_RESOURCE,
    ComputeProvider,
    LaunchOptions,
    LaunchPlan,
    Machine,
    MachineSpec,
    ManagedResource,
    Rate,
)
from runctl.providers.runpod.api import GpuType, Pod, RunpodAPI, pod_name
from runctl.providers.runpod.graphql import GraphQLClient, resolve_api_key

PROVIDER = "runpod"
KIND = "pod"
CLOUDS = {"secure": ("SECURE",), "community": ("COMMUNITY",), "all": ("SECURE", "COMMUNITY")}
#: Ledger states in which a pod's ``costPerHr`` accrues.
BILLABLE_STATES = frozenset({"created", "running", "restarting"})
#: RunPod's published price for the volume disk of a stopped pod (USD per GB-month).
STOPPED_VOLUME_USD_PER_GB_MONTH = 0.20
VOLUME_MOUNT_PATH = "/workspace"
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Errors after which RunPod surely created nothing (the request was refused).
_REFUSED = (ValidationError, AuthError, QuotaError, NotFoundError)


def pod_start_command(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, list[dict[str, str]]]:
    """The ``dockerArgs`` and ``env`` inputs that make a pod run ``argv`` with ``env``.

    RunPod splits ``dockerArgs`` into words like a shell and runs them as the container's
    command, so the argv is passed as one ``bash -c`` script with every word quoted: nothing in
    it is interpreted twice.
    """
    if not argv:
        raise ValidationError("the pod command is empty", hint="give the program and its arguments")
    return "bash -c " + shlex.quote(shlex.join(argv)), pod_env(env)


def pod_env(env: Mapping[str, str]) -> list[dict[str, str]]:
    """RunPod's ``env`` input (a list of key/value pairs); keys must be variable names."""
    bad = [key for key in env if not _ENV_KEY_RE.match(key)]
    if bad:
        raise ValidationError(
            f"invalid environment variable name(s) for the pod: {', '.join(map(repr, bad))}",
            hint="names are letters, digits and underscores, not starting with a digit",
        )
    return [{"key": key, "value": str(value)} for key, value in env.items()]


def managed(pod: Pod) -> ManagedResource:
    """A runctl pod as ``resources reconcile`` sees it: its name stands in for the tags."""
    return ManagedResource(
        provider=PROVIDER,
        kind=KIND,
        cloud_id=pod.id,
        state=pod.state,
        zone=None,
        tags={TAG_MANAGED: "true", TAG_RESOURCE: pod.resource_id or ""},
        detail={"name": pod.name, "cost_per_hr": pod.cost_per_hr, "gpu": pod.gpu, "gpu_count": pod.gpu_count},
    )


def stopped_volume_usd_per_month(volume_gb: int | None) -> float:
    """What RunPod charges per month for the volume of a stopped pod (an estimate)."""
    return (volume_gb or 0) * STOPPED_VOLUME_USD_PER_GB_MONTH


@dataclass(frozen=True)
class Offer:
    """One way to place the pod: a GPU type in a cloud at a price (per GPU-hour and in total)."""

    gpu_type_id: str
    gpu_name: str
    cloud: str
    price_per_gpu: float
    bid_per_gpu: float | None
    rate_usd_per_hour: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunpodProvider(ComputeProvider):
    """RunPod GPU pods through the GraphQL API (see the module docstring for the contract)."""

    name = PROVIDER
    command_at_creation = True
    machine_kinds = frozenset({KIND})
    #: A pod in one of these no longer runs the job (its command ended, or it is going away).
    lost_states = frozenset({"exited", "terminated", "gone"})

    def __init__(
        self,
        ledger: Ledger,
        config: RunpodConfig | None = None,
        *,
        api: RunpodAPI | None = None,
        confirm_timeout: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.config = config or RunpodConfig()
        self._api = api
        self.retry = retry or RetryPolicy.for_cloud_api("RunPod API call")
        self.lifecycle = Lifecycle(ledger, {PROVIDER: self}, retry=self.retry)
        self.confirm_timeout = confirm_timeout

    @classmethod
    def from_config(
        cls, ledger: Ledger, config: Config, *, progress: Callable[[str], None] | None = None
    ) -> RunpodProvider:
        """The provider as the CLI builds it: ``[runpod]`` settings, ``[retry]`` policy."""
        return cls(ledger, config.runpod, retry=RetryPolicy.for_cloud_api("RunPod API call", config.retry))

    def spec(self, options: LaunchOptions) -> MachineSpec:
        """A MachineSpec from the launch options: ``gpus`` (ids or names, repeatable and
        comma-separated, tried in order), ``zone`` is the cloud, ``max_price`` the bid per GPU-hour
        (it implies spot); defaults from ``[runpod]``."""
        if options.instance_type or options.iam_instance_profile or options.data_volume:
            raise ValidationError(
                "RunPod pods are chosen by GPU, not by instance type, profile or EBS volume",
                hint="give --gpu (runctl runpod gpus lists them)",
            )
        bid = options.max_price
        if bid is not None and not 0 < bid < float("inf"):
            raise ValidationError(
                f"bid {bid} must be a positive number", hint="e.g. --bid 0.25 (USD per GPU-hour)"
            )
        extra: dict[str, Any] = {
            "cloud": str(options.zone or self.config.cloud_type).lower(),
            "label": options.name,
        }
        if options.gpus:
            extra["gpu_types"] = [g.strip() for item in options.gpus for g in item.split(",") if g.strip()]
        if options.volume_gb is not None:
            extra["volume_gb"] = options.volume_gb
        if bid is not None:
            extra["bid"] = bid
        return MachineSpec(
            gpu_count=options.gpu_count or self.config.gpu_count,
            spot=bool(options.spot) or bid is not None,
            count=options.count,
            image=options.image,
            disk_gb=options.disk_gb,
            extra=extra,
        )

    def catalogue_rate(self, spec: MachineSpec) -> tuple[Rate, str]:
        """The catalogue's on-demand price of the first GPU asked for, in the chosen cloud (secure
        for ``all``)."""
        from runctl.providers.runpod import pricing

        name = (list(spec.extra.get("gpu_types") or []) or [spec.gpu_type or self.config.default_gpu])[0]
        chosen = str(spec.extra.get("cloud") or self.config.cloud_type)
        cloud = "secure" if chosen == "all" else chosen
        gpu_id, display = pricing.catalogue_gpu(name)
        entry = pricing.gpu_price(gpu_id, cloud)
        what = f"{spec.count} pod(s) of {spec.gpu_count} x {display} ({cloud} cloud, on-demand)"
        if entry is None:
            return Rate(
                None, "catalogue", note=f"no catalogue price for {display} in the {cloud} cloud"
            ), what
        return Rate(entry.usd * spec.gpu_count, entry.origin, entry.as_of), what

    def refresh_prices(self, *, region: str | None = None, item: str | None = None) -> tuple[int, str]:
        """RunPod's ``gpuTypes`` (every GPU, both clouds); needs the API key."""
        from runctl.core import prices
        from runctl.providers.runpod import pricing

        if not self.has_credentials:
            raise AuthError(
                "no RunPod API key to ask gpuTypes with",
                hint="set RUNPOD_API_KEY, or refresh only AWS with --provider aws",
            )
        table = pricing.refreshed_entries(self.api.gpu_types(1))
        prices.store(self.name, pricing.SECTION, table)
        return sum(len(items) for items in table.values()), "RunPod gpuTypes"

    def stop_refusal(self, spec: MachineSpec) -> str | None:
        return (
            "a RunPod pod runs its command from creation: a stopped pod would rerun the same attempt "
            "when resumed"
        )

    def restart(self, resource: Resource) -> Resource:
        return self.resume(resource)

    @property
    def api(self) -> RunpodAPI:
        if self._api is None:
            client = GraphQLClient(self.config.api_url, resolve_api_key(self.config), retry=self.retry)
            self._api = RunpodAPI(client)
        return self._api

    @property
    def has_credentials(self) -> bool:
        """Whether an API key is configured (so callers can skip RunPod instead of failing)."""
        return self.api.client.has_key

    def configured(self) -> bool:
        return self.has_credentials

    # -- prices and plans ----------------------------------------------------------------------

    def gpu_types(self, gpu_count: int = 1) -> list[GpuType]:
        """Every GPU type with its prices for ``gpu_count`` GPUs, cheapest first."""
        types = self.api.gpu_types(gpu_count)
        return sorted(types, key=lambda g: (g.lowest_price is None, g.lowest_price or 0.0, g.id))

    @staticmethod
    def resolve_gpu(name: str, types: Sequence[GpuType]) -> GpuType:
        """The GPU type called ``name`` (its id or display name, any case)."""
        wanted = name.strip().lower()
        for gpu in types:
            if wanted in (gpu.id.lower(), gpu.display_name.lower()):
                return gpu
        choices = [g.id for g in types] + [g.display_name for g in types]
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        raise ValidationError(
            f"RunPod has no GPU type {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            hint="'runctl runpod gpus' lists the GPU types and their prices",
        )

    def plan(self, spec: MachineSpec) -> LaunchPlan:
        """Price ``spec`` into an ordered list of offers; sends no mutation."""
        extra = dict(spec.extra)
        cloud = str(extra.get("cloud") or self.config.cloud_type).lower()
        if cloud not in CLOUDS:
            raise ValidationError(f"unknown RunPod cloud {cloud!r}", hint="use secure, community or all")
        if spec.gpu_count < 1 or spec.count < 1:
            raise ValidationError("gpu count and pod count must be at least 1", hint="e.g. --gpu-count 1")
        bid = extra.get("bid")
        if bid is not None and float(bid) <= 0:
            raise ValidationError(f"bid {bid} must be positive", hint="e.g. --bid 0.25 (USD per GPU-hour)")
        spot = spec.spot or bid is not None
        names = list(extra.get("gpu_types") or [spec.gpu_type or self.config.default_gpu])
        types = self.api.gpu_types(spec.gpu_count)
        gpus = list(dict.fromkeys(self.resolve_gpu(n, types) for n in names))
        offers: list[Offer] = []
        notes: list[str] = []
        for gpu in gpus:
            for cloud_type in CLOUDS[cloud]:
                price = gpu.price(cloud_type, spot=spot)
                market = "interruptible" if spot else "on-demand"
                if price is None:
                    notes.append(f"{gpu.id}: no {market} offer in the {cloud_type.lower()} cloud")
                    continue
                per_gpu = price
                if spot:
                    per_gpu = float(bid) if bid is not None else price
                    if per_gpu < price:
                        notes.append(
                            f"{gpu.id} ({cloud_type.lower()}): bid ${per_gpu:.3f} is under the "
                            f"current spot price ${price:.3f}"
                        )
                        continue
                offers.append(
                    Offer(
                        gpu_type_id=gpu.id,
                        gpu_name=gpu.display_name,
                        cloud=cloud_type,
                        price_per_gpu=price,
                        bid_per_gpu=per_gpu if spot else None,
                        rate_usd_per_hour=round(per_gpu * spec.gpu_count, 6),
                    )
                )
        if not offers:
            raise ValidationError(
                "no RunPod offer matches: " + "; ".join(notes),
                hint="try another GPU type (runctl runpod gpus), --cloud all, or a higher --bid",
            )
        volume_gb = self._volume_gb(spec)
        if volume_gb:
            notes.append(
                f"a stopped pod's {volume_gb} GB volume bills about "
                f"${stopped_volume_usd_per_month(volume_gb):.2f}/month until terminated"
            )
        printable = self._pod_input(spec, reveal_env=False)
        first = offers[0]
        market = "interruptible" if spot else "on-demand"
        return LaunchPlan(
            provider=PROVIDER,
            spec=spec,
            rate_usd_per_hour=first.rate_usd_per_hour,
            what=f"{spec.count} pod(s) of {spec.gpu_count} x {first.gpu_name} "
            f"({first.cloud.lower()} cloud, {market})",
            tries=tuple(f"{o.gpu_type_id}@{o.cloud.lower()}" for o in offers),
            kind=KIND,
            request={
                "mutation": "podRentInterruptable" if spot else "podFindAndDeployOnDemand",
                "input": printable,
                "offers": [o.to_dict() for o in offers],
            },
            notes=notes,
        )

    def _volume_gb(self, spec: MachineSpec) -> int:
        value = spec.extra.get("volume_gb")
        return int(self.config.volume_gb if value is None else value)

    def _pod_input(self, spec: MachineSpec, *, reveal_env: bool) -> dict[str, Any]:
        """The create input shared by every offer (no name, GPU type or cloud yet)."""
        volume_gb = self._volume_gb(spec)
        pod_input: dict[str, Any] = {
            "imageName": spec.image or self.config.image,
            "gpuCount": spec.gpu_count,
            "containerDiskInGb": spec.disk_gb or self.config.container_disk_gb,
            "volumeInGb": volume_gb,
        }
        if volume_gb:
            pod_input["volumeMountPath"] = VOLUME_MOUNT_PATH
        command = spec.extra.get("command")
        env = dict(spec.extra.get("env") or {})
        if command:
            pod_input["dockerArgs"], env_input = pod_start_command(list(command), env)
        else:
            env_input = pod_env(env)
        if env_input:
            pod_input["env"] = (
                env_input if reveal_env else [{"key": e["key"], "value": "***"} for e in env_input]
            )
        return pod_input

    # -- create --------------------------------------------------------------------------------

    def apply(
        self,
        plan: LaunchPlan,
        *,
        job_id: str | None = None,
        allow_over_limit: bool = False,
        wait: bool = False,
    ) -> list[Machine]:
        """Create ``spec.count`` pods (intent first); on failure release the ones created. RunPod
        has no running-machine guard of runctl's, and a pod is placed running: both flags are moot."""
        machines: list[Machine] = []
        try:
            for _ in range(plan.spec.count):
                machines.append(self._create_one(plan, job_id))
        except BaseException:
            for machine in machines:
                try:
                    self.lifecycle.release(self.ledger.get_resource(machine.resource_id))
                except RunctlError as exc:
                    self.ledger.add_event(
                        "resource.release_failed",
                        str(exc)[:500],
                        job_id=job_id,
                        resource_id=machine.resource_id,
                    )
            raise
        return machines

    def _create_one(self, plan: LaunchPlan, job_id: str | None) -> Machine:
        spec = plan.spec
        offers = [Offer(**o) for o in plan.request["offers"]]
        base_input = self._pod_input(spec, reveal_env=True)
        ledger_spec = {
            "gpu_types": [o.gpu_type_id for o in offers],
            "clouds": sorted({o.cloud for o in offers}),
            "gpu_count": spec.gpu_count,
            "spot": offers[0].bid_per_gpu is not None,
            "bid": spec.extra.get("bid"),
            "image": base_input["imageName"],
            "container_disk_gb": base_input["containerDiskInGb"],
            "volume_gb": base_input["volumeInGb"],
            "env_keys": [e["key"] for e in base_input.get("env", [])],
        }
        with self.lifecycle.track(PROVIDER, KIND, job_id=job_id, spec=ledger_spec) as intent:
            name = pod_name(intent.id, spec.extra.get("label"))
            crash_point("runpod.create.intent_written")
            pod, offer = self._deploy_first_available(intent, name, base_input, offers)
            crash_point("runpod.create.after_call")
            self.ledger.add_event(
                "runpod.placed",
                f"pod {pod.id} ({name}): {offer.gpu_type_id} x{spec.gpu_count}, {offer.cloud.lower()} "
                f"cloud, ${pod.cost_per_hr or offer.rate_usd_per_hour:.4f}/h",
                job_id=job_id,
                resource_id=intent.id,
                data={"pod_name": name, **offer.to_dict()},
            )
            resource = self.lifecycle.created(
                intent,
                cloud_id=pod.id,
                state=pod.state,
                rate_usd_per_hour=pod.cost_per_hr or offer.rate_usd_per_hour,
            )
            self.ledger.update_spec(resource.id, gpu_type=offer.gpu_type_id, cloud=offer.cloud.lower())
        crash_point("runpod.create.ledger_updated")
        return Machine(resource_id=resource.id, cloud_id=pod.id, state=resource.state)

    def _deploy_first_available(
        self, intent: Resource, name: str, base_input: dict[str, Any], offers: Sequence[Offer]
    ) -> tuple[Pod, Offer]:
        tried: list[str] = []
        for offer in offers:
            pod_input = {**base_input, "name": name, "gpuTypeId": offer.gpu_type_id, "cloudType": offer.cloud}
            try:
                return self.api.deploy(pod_input, bid_per_gpu=offer.bid_per_gpu), offer
            except CapacityError:
                tried.append(f"{offer.gpu_type_id} ({offer.cloud.lower()})")
                self.ledger.add_event(
                    "runpod.no_capacity",
                    f"no capacity for {offer.gpu_type_id} in the {offer.cloud.lower()} cloud",
                    job_id=intent.job_id,
                    resource_id=intent.id,
                )
            except RunctlError as exc:
                found = self._find_quietly(name)
                if found is not None:
                    return found, offer
                if isinstance(exc, _REFUSED):
                    self.ledger.transition(intent.id, "create_failed", billable=False, detail=str(exc)[:300])
                raise
        self.ledger.transition(intent.id, "create_failed", billable=False, detail="no capacity")
        raise CapacityError(
            f"RunPod has no capacity for any offer tried: {', '.join(tried)}",
            provider=PROVIDER,
            operation="create pod",
            resource_id=intent.id,
            hint="add GPU types (--gpu may be repeated), use --cloud all, or try again later",
        )

    def _find_quietly(self, name: str) -> Pod | None:
        try:
            return self.api.find_pod_by_name(name)
        except RunctlError:
            return None

    def start(self, machine: Machine, argv: Sequence[str], env: Mapping[str, str]) -> str:
        """RunPod cannot start a command on a running pod: the command is fixed at creation."""
        raise ResourceError(
            f"RunPod cannot start a command on the existing pod {machine.cloud_id}",
            resource_id=machine.resource_id,
            hint="create the pod with the command instead: MachineSpec.extra['command'] and "
            "['env'] (see pod_start_command)",
        )

    # -- state ---------------------------------------------------------------------------------

    def is_billable(self, kind: str, state: str) -> bool:
        """Running pods bill their ``costPerHr``; stopped ones only storage (see module doc)."""
        return state in BILLABLE_STATES

    def find_pod(self, resource: Resource) -> Pod | None:
        """The resource's pod: by cloud id, or for an ``intent`` row by its name."""
        if resource.cloud_id:
            return self.api.get_pod(resource.cloud_id)
        matches = [p for p in self.managed_pods() if p.resource_id == resource.id]
        return matches[0] if matches else None

    def lookup(self, resource: Resource) -> str | None:
        pod = self.find_pod(resource)
        return pod.state if pod is not None else None

    def managed_pods(self) -> list[Pod]:
        """Every live pod that runctl named (``runctl-<resource id>…``), in the ledger or not."""
        return [p for p in self.api.list_pods() if p.resource_id is not None and not p.is_gone]

    # -- discovery (resources reconcile / cleanup) ---------------------------------------------

    def find(self, resource: Resource) -> ManagedResource | None:
        """What RunPod has for a ledger row (by pod id, or by name for an ``intent`` row)."""
        pod = self.find_pod(resource)
        return None if pod is None else managed(pod)

    def list_managed(self) -> list[ManagedResource]:
        """Every live runctl-named pod, as reconcile compares it with the ledger."""
        return [managed(p) for p in self.managed_pods()]

    def rate_for(self, found: ManagedResource) -> Rate:
        """The pod's own ``costPerHr``: RunPod prices each pod, there is no catalogue to consult."""
        return Rate(found.detail.get("cost_per_hr"), "pod", note="rate: the pod's costPerHr at RunPod")

    def retag(self, found: ManagedResource, ledger_id: str) -> None:
        """RunPod cannot rename a pod: the adopted row is matched by pod id from now on."""
        self.ledger.add_event(
            "resource.reconcile",
            f"pod {found.cloud_id} keeps its name {found.detail.get('name')!r} (RunPod cannot "
            f"rename pods); ledger row {ledger_id} follows it by pod id",
            resource_id=ledger_id,
        )

    def gone_state(self, kind: str) -> str:
        return "terminated"

    def refresh_rate(self, resource: Resource) -> float | None:
        """The pod's ``costPerHr`` now, recorded when it changed (e.g. a new bid)."""
        if resource.kind != KIND or not resource.cloud_id or resource.is_gone:
            return None
        pod = self.api.get_pod(resource.cloud_id)
        if pod is None or not pod.cost_per_hr or pod.cost_per_hr == resource.rate_usd_per_hour:
            return None
        self.ledger.set_rate(resource.id, pod.cost_per_hr)
        self.ledger.add_event(
            "resource.rate",
            f"pod {pod.id} now costs ${pod.cost_per_hr:g}/h (was ${resource.rate_usd_per_hour or 0:g}/h)",
            job_id=resource.job_id,
            resource_id=resource.id,
        )
        return pod.cost_per_hr

    # -- stop, resume, release -----------------------------------------------------------------

    def _pod_id(self, resource: Resource) -> str:
        pod = None if resource.cloud_id else self.find_pod(resource)
        pod_id = resource.cloud_id or (pod.id if pod else None)
        if not pod_id:
            raise NotFoundError(
                f"resource {resource.id} has no pod at RunPod",
                resource_id=resource.id,
                hint="'runctl runpod list' shows the pods",
            )
        return pod_id

    def stop(self, resource: Resource) -> Resource:
        """``podStop``: the GPU is released; the volume stays (and bills storage)."""
        pod = self.api.stop_pod(self._pod_id(resource))
        return self.lifecycle.transition(resource, pod.state, detail="stopped")

    def resume(self, resource: Resource, *, bid_per_gpu: float | None = None) -> Resource:
        """``podResume``, or ``podBidResume`` for an interruptible pod (at ``bid_per_gpu``, else the
        bid it was created with)."""
        pod_id = self._pod_id(resource)
        gpu_count = int(resource.spec.get("gpu_count") or 1)
        bid = None
        if resource.spec.get("spot") or bid_per_gpu is not None:
            bid = bid_per_gpu or resource.spec.get("bid") or (resource.rate_usd_per_hour or 0.0) / gpu_count
            if not bid:
                raise ValidationError(
                    f"no bid known for the interruptible pod {pod_id}", hint="pass --bid USD_PER_GPU_HOUR"
                )
        pod = self.api.resume_pod(pod_id, gpu_count=gpu_count, bid_per_gpu=bid)
        if pod.cost_per_hr and pod.cost_per_hr != resource.rate_usd_per_hour:
            self.ledger.set_rate(resource.id, pod.cost_per_hr)
        return self.lifecycle.transition(self.ledger.get_resource(resource.id), pod.state, detail="resumed")

    def release(self, resource: Resource) -> str:
        """``podTerminate``, then wait until RunPod no longer reports the pod."""
        pod = self.find_pod(resource)
        if pod is not None:
            self.terminate_pod(pod.id, resource_id=resource.id)
        return "terminated"

    def terminate_pod(self, pod_id: str, *, resource_id: str | None = None) -> None:
        """Terminate any pod by id and confirm it is gone (also for pods not in the ledger)."""
        self.api.terminate_pod(pod_id)
        deadline = time.monotonic() + self.confirm_timeout
        delay = 0.25
        while (pod := self.api.get_pod(pod_id)) is not None:
            if time.monotonic() + delay > deadline:
                raise ResourceError(
                    f"pod {pod_id} was asked to terminate but RunPod still reports it {pod.status} "
                    f"after {self.confirm_timeout:.0f}s",
                    resource_id=resource_id or pod_id,
                    resource_state=pod.state,
                    hint="run the command again, or terminate it in the RunPod console; the ledger "
                    "keeps it as live until it is gone",
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
