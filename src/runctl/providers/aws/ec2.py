"""EC2 instances: check and price a launch (plan), create it intent-first (launch),
start/stop/terminate it (verified), and find it again by tag after a crash.

Decisions the issue left open, recorded here:

* **Billing.** EC2 bills per second from ``running``. runctl counts ``pending`` as billable too:
  the ledger only learns that a machine reached ``running`` when it next looks (``--wait``,
  ``status``, ``reconcile``), and a machine created without ``--wait`` must not show $0 until
  then. Erring by the boot time (seconds) beats erring by hours. Everything else
  (stopping, stopped, shutting-down, terminated) is not billed.
* **Idempotency follows real EC2.** Every ``run_instances`` carries a ``ClientToken``: the ledger
  row's token for the first placement, ``<token>-<n>`` for the n-th other placement (EC2 rejects
  one token reused with different parameters). A retry after an ambiguous failure (throttling,
  5xx, a lost connection) first looks the instance up by its ``runctl:resource`` tag and adopts
  it instead of sending again. That also works on moto, whose ClientToken is not idempotent and
  whose client-token filter fails.
* **Placement.** ``--az`` (or the volume to attach, or ``[aws] subnet_id``) pins a zone;
  otherwise runctl walks every zone of the region that offers the type
  (``describe_instance_type_offerings``), spot zones cheapest first. A capacity error moves to
  the next zone; with fallback, spot becomes on-demand once every zone refused spot. Quota, auth
  and validation errors stop at once. Attempts are therefore bounded by zones × markets (each
  attempt itself retried on throttling under the cloud API policy).
* **Spot** uses ``run_instances`` with ``InstanceMarketOptions`` (one-time, terminate on
  interruption), never the legacy spot-request API. One-time spot instances cannot be stopped.
  The ledger row's spec records the market actually placed (``market``: a spot request that fell
  back is ``on-demand``) and where the rate came from (``rate``: source, date, note).
* **Guard.** At most ``[aws] max_running_instances`` (default 10) runctl-managed instances
  pending/running in the region; machines runctl did not create are not counted. ``--yes``
  overrides. Checked before the intent is written, for ``create`` and ``start``.
* **Transitions are checked by runctl**, not left to the API (moto accepts any): stopping or
  starting a terminated instance is an error before any call; start/stop/terminate return only
  once ``describe_instances`` shows the target state. A failed terminate leaves the ledger at
  its last known state — never ``terminated`` for a machine that may still bill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from runctl.core import prices
from runctl.core.errors import (
    BudgetError,
    CapacityError,
    NotFoundError,
    ResourceError,
    RunctlError,
    ValidationError,
)
from runctl.core.ledger import Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.testhooks import crash_point
from runctl.providers.aws import pricing
from runctl.providers.aws.ami import AmiResolver
from runctl.providers.aws.context import (
    TAG_MANAGED,
    TAG_RESOURCE,
    AwsContext,
    check_id,
    create_once,
    ensure_owned,
    error_code,
    runctl_tags,
    settle_failed_create,
    tag_dict,
)
from runctl.providers.base import LaunchPlan, MachineSpec, ManagedResource, Rate

KIND = "instance"
BILLABLE_STATES = frozenset({"pending", "running"})
#: EC2 Linux bills per second with a 60 s minimum per running period (and so does EBS).
BILLING_MINIMUM_S = 60.0
ALIVE_STATES = ("pending", "running", "stopping", "stopped")
#: For each target state, the states from which it can no longer be reached.
DEAD_ENDS = {
    "running": frozenset({"shutting-down", "terminated"}),
    "stopped": frozenset({"shutting-down", "terminated"}),
    "terminated": frozenset(),
}


@dataclass(frozen=True)
class InstanceType:
    """What ``describe_instance_types`` says about a type (only what runctl uses)."""

    name: str
    vcpus: int
    memory_mib: int
    gpus: int
    gpu_model: str | None
    architectures: tuple[str, ...]
    usage_classes: tuple[str, ...]

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def architecture(self) -> str:
        return "x86_64" if "x86_64" in self.architectures else self.architectures[0]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "architecture": self.architecture}


@dataclass(frozen=True)
class Instance:
    """One EC2 instance as ``describe_instances`` shows it."""

    id: str
    state: str
    instance_type: str
    zone: str | None
    market: str
    launched_at: float | None
    image_id: str | None
    public_ip: str | None
    private_ip: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Instance:
        launched = data.get("LaunchTime")
        return cls(
            id=data["InstanceId"],
            state=data["State"]["Name"],
            instance_type=data.get("InstanceType", ""),
            zone=data.get("Placement", {}).get("AvailabilityZone"),
            market="spot" if data.get("InstanceLifecycle") == "spot" else "on-demand",
            launched_at=launched.timestamp() if launched is not None else None,
            image_id=data.get("ImageId"),
            public_ip=data.get("PublicIpAddress"),
            private_ip=data.get("PrivateIpAddress"),
            tags=tag_dict(data.get("Tags")),
        )

    @property
    def ledger_id(self) -> str | None:
        return self.tags.get(TAG_RESOURCE) or None

    @property
    def name(self) -> str:
        return self.tags.get("Name", "")

    def managed(self) -> ManagedResource:
        return ManagedResource(
            provider="aws",
            kind=KIND,
            cloud_id=self.id,
            state=self.state,
            zone=self.zone,
            tags=self.tags,
            created_at=self.launched_at,
            detail={"instance_type": self.instance_type, "market": self.market},
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ledger_id": self.ledger_id, "name": self.name}


class Instances:
    """EC2 instances in one region, recorded in the ledger through ``lifecycle``."""

    def __init__(
        self, ctx: AwsContext, lifecycle: Lifecycle, amis: AmiResolver, *, stale_days: int = 30
    ) -> None:
        self.ctx = ctx
        self.lifecycle = lifecycle
        self.amis = amis
        self.stale_days = stale_days

    # -- reading ------------------------------------------------------------------------------

    def instance_type(self, name: str) -> InstanceType:
        """The type's facts; a ValidationError before anything else if it does not exist."""
        try:
            found = self.ctx.call(
                "describe_instance_types", operation=f"describe instance type {name}", InstanceTypes=[name]
            )["InstanceTypes"]
        except RunctlError as exc:
            if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
                raise
            found = []
        if not found:
            raise ValidationError(
                f"unknown instance type {name!r}",
                hint="use an EC2 type such as g5.xlarge, g4dn.xlarge or t3.medium "
                "(aws ec2 describe-instance-types lists them)",
            )
        data = found[0]
        gpus = data.get("GpuInfo", {}).get("Gpus", [])
        return InstanceType(
            name=data["InstanceType"],
            vcpus=int(data.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
            memory_mib=int(data.get("MemoryInfo", {}).get("SizeInMiB", 0)),
            gpus=sum(int(g.get("Count", 0)) for g in gpus),
            gpu_model=gpus[0].get("Name") if gpus else None,
            architectures=tuple(data.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])),
            usage_classes=tuple(data.get("SupportedUsageClasses", ["on-demand", "spot"])),
        )

    def region_zones(self) -> list[str]:
        zones = self.ctx.call(
            "describe_availability_zones",
            operation="list availability zones",
            Filters=[{"Name": "state", "Values": ["available"]}],
        )["AvailabilityZones"]
        return sorted(z["ZoneName"] for z in zones)

    def zones_offering(self, instance_type: str) -> list[str]:
        offers = self.ctx.paginate(
            "describe_instance_type_offerings",
            "InstanceTypeOfferings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )
        return sorted({o["Location"] for o in offers})

    def describe(self, instance_id: str) -> Instance | None:
        """The instance, or None if EC2 does not know it (never created, or long terminated)."""
        try:
            reservations = self.ctx.call(
                "describe_instances",
                operation=f"describe {instance_id}",
                resource_id=instance_id,
                InstanceIds=[instance_id],
            )["Reservations"]
        except NotFoundError:
            return None
        found = [Instance.from_api(i) for r in reservations for i in r["Instances"]]
        return found[0] if found else None

    def require(self, instance_id: str) -> Instance:
        check_id(instance_id, "instance")
        instance = self.describe(instance_id)
        if instance is None:
            raise NotFoundError(
                f"instance {instance_id} does not exist in {self.ctx.region}",
                resource_id=instance_id,
                hint="check the id and the region ([aws] region / AWS_REGION)",
            )
        return instance

    def list_instances(
        self, *, managed_only: bool = True, states: tuple[str, ...] | None = ALIVE_STATES
    ) -> list[Instance]:
        """Instances in the region (runctl's only, by default), oldest first."""
        filters = []
        if managed_only:
            filters.append({"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]})
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        reservations = self.ctx.paginate("describe_instances", "Reservations", Filters=filters)
        found = [Instance.from_api(i) for r in reservations for i in r["Instances"]]
        return sorted(found, key=lambda i: (i.launched_at or 0, i.id))

    def find_by_resource(self, ledger_id: str) -> Instance | None:
        """The live instance tagged ``runctl:resource=ledger_id`` (how an intent row is resolved)."""
        reservations = self.ctx.paginate(
            "describe_instances",
            "Reservations",
            Filters=[
                {"Name": f"tag:{TAG_RESOURCE}", "Values": [ledger_id]},
                {"Name": "instance-state-name", "Values": list(ALIVE_STATES)},
            ],
        )
        found = [Instance.from_api(i) for r in reservations for i in r["Instances"]]
        return max(found, key=lambda i: i.launched_at or 0) if found else None

    def lookup(self, resource: Resource) -> Instance | None:
        """The instance behind a ledger row: by cloud id, else (intent rows) by tag."""
        if resource.cloud_id:
            return self.describe(resource.cloud_id)
        return self.find_by_resource(resource.id)

    def check_guard(self, adding: int, *, allow: bool) -> None:
        """Refuse to pass ``aws.max_running_instances`` runctl instances without ``allow``."""
        limit = self.ctx.config.max_running_instances
        active = len(self.list_instances(states=("pending", "running")))
        if active + adding > limit and not allow:
            raise BudgetError(
                f"{active} runctl instance(s) are already pending or running in {self.ctx.region}; "
                f"starting {adding} more would pass the limit of {limit} (aws.max_running_instances)",
                operation="instance guard",
                hint="add --yes to go ahead, raise [aws] max_running_instances, or terminate idle "
                "machines ('runctl aws list')",
            )

    # -- plan and launch ----------------------------------------------------------------------

    def plan(self, spec: MachineSpec) -> LaunchPlan:
        """Validate and price ``spec`` with read-only calls; nothing is created."""
        if not spec.instance_type:
            raise ValidationError(
                "no instance type given",
                hint="runctl aws create g5.xlarge, or set [aws] default_instance_type",
            )
        if spec.count < 1:
            raise ValidationError(f"count must be at least 1, got {spec.count}")
        config, extra = self.ctx.config, dict(spec.extra)
        itype = self.instance_type(spec.instance_type)
        if spec.spot and "spot" not in itype.usage_classes:
            raise ValidationError(
                f"{itype.name} cannot be launched as spot", hint="use --on-demand or another type"
            )
        zones = self._zones(itype.name, spec.zone)
        ami = self.amis.resolve(
            gpu=itype.is_gpu, architecture=itype.architecture, explicit=spec.image or config.default_ami
        )
        on_demand = pricing.on_demand(itype.name, self.ctx.region)
        max_price = extra.get("max_price") or config.spot_max_price
        spot_rates: dict[str, Rate] = {}
        zones_spot = zones
        if spec.spot:
            quotes = pricing.spot_quotes(self.ctx, itype.name)
            spot_rates = {
                z: pricing.spot(quotes.get(z), on_demand, max_price=max_price, stale_days=self.stale_days)
                for z in zones
            }
            zones_spot = sorted(
                zones,
                key=lambda z: (
                    spot_rates[z].source != "spot-price-history",
                    spot_rates[z].usd_per_hour if spot_rates[z].usd_per_hour is not None else math.inf,
                    z,
                ),
            )
        fallback = extra.get("fallback", config.fallback_to_on_demand)
        candidates = [{"market": "spot", "zone": z} for z in zones_spot] if spec.spot else []
        if not spec.spot or fallback:
            candidates += [{"market": "on-demand", "zone": z} for z in zones]
        first = candidates[0]
        rate = spot_rates[first["zone"]] if first["market"] == "spot" else on_demand
        notes = [f"image {ami.image_id} ({ami.name}) from {ami.source}", *ami.notes]
        notes += [p for p in dict.fromkeys((rate.note, on_demand.note)) if p]
        if on_demand.as_of and prices.age_days(on_demand.as_of) > self.stale_days:
            notes.append(
                f"the on-demand price of {itype.name} is dated {on_demand.as_of}, older than "
                f"[cost] price_stale_days ({self.stale_days}); refresh: runctl cost prices --refresh"
            )
        if spec.spot and fallback:
            notes.append("falls back to on-demand if no zone has spot capacity")
        where = f"{first['market']} in {self.ctx.region}"
        request: dict[str, Any] = {
            "region": self.ctx.region,
            "instance_type": itype.to_dict(),
            "ami": ami.to_dict(),
            "name": extra.get("name"),
            "max_price": max_price,
            "run_instances": self._run_params(itype, ami.root_device_name, ami.image_id, spec, extra),
            "candidates": candidates,
            "rates": {
                "on-demand": on_demand.to_dict(),
                "spot": {z: p.to_dict() for z, p in spot_rates.items()},
            },
        }
        request["first_attempt"] = first_attempt(request)  # what --dry-run -o json shows is sent
        return LaunchPlan(
            provider="aws",
            spec=replace(spec, image=ami.image_id),
            rate_usd_per_hour=rate.usd_per_hour,
            what=f"{spec.count} x {itype.name} ({where})",
            tries=tuple(f"{c['market']}@{c['zone']}" for c in candidates),
            kind=KIND,
            billing_minimum_s=BILLING_MINIMUM_S,
            request=request,
            notes=tuple(notes),
        )

    def _zones(self, instance_type: str, wanted: str | None) -> list[str]:
        offered = self.zones_offering(instance_type)
        region = self.ctx.region
        if not offered:
            raise ValidationError(
                f"{instance_type} is not offered in region {region}",
                hint="choose another instance type, or another region ([aws] region / AWS_REGION)",
            )
        if self.ctx.config.subnet_id:
            subnet_zone = self._subnet_zone(self.ctx.config.subnet_id)
            if wanted and wanted != subnet_zone:
                raise ValidationError(
                    f"--az {wanted} conflicts with [aws] subnet_id {self.ctx.config.subnet_id} "
                    f"(in {subnet_zone})",
                    hint="leave out --az, or use a subnet in that zone",
                )
            wanted = subnet_zone
        if wanted is None:
            return offered
        if wanted not in offered:
            zones = self.region_zones()
            if wanted not in zones:
                raise ValidationError(
                    f"{wanted!r} is not an availability zone of {region}",
                    hint=f"zones of {region}: {', '.join(zones)}",
                )
            raise ValidationError(
                f"{instance_type} is not offered in {wanted}",
                hint=f"it is offered in: {', '.join(offered)}",
            )
        return [wanted]

    def _subnet_zone(self, subnet_id: str) -> str:
        subnets = self.ctx.call(
            "describe_subnets", operation=f"describe subnet {subnet_id}", SubnetIds=[subnet_id]
        )["Subnets"]
        return str(subnets[0]["AvailabilityZone"])

    def _run_params(
        self,
        itype: InstanceType,
        root_device: str | None,
        image_id: str,
        spec: MachineSpec,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        config = self.ctx.config
        params: dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": itype.name,
            "MinCount": 1,
            "MaxCount": 1,
            # IMDSv2 only; hop limit 2 so a container on the machine still reaches it.
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 2,
            },
        }
        if root_device:
            params["BlockDeviceMappings"] = [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": spec.disk_gb or config.root_volume_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ]
        profile = extra.get("iam_instance_profile") or config.iam_instance_profile
        if profile:
            params["IamInstanceProfile"] = (
                {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
            )
        if config.key_name:
            params["KeyName"] = config.key_name
        if config.security_group_ids:
            params["SecurityGroupIds"] = list(config.security_group_ids)
        if config.subnet_id:
            params["SubnetId"] = config.subnet_id
        return params

    def launch(self, plan: LaunchPlan, *, job_id: str | None = None) -> tuple[Resource, Instance]:
        """Create one machine of ``plan``: intent row, tagged call, ledger update.

        On failure nothing is left behind: whatever the attempt may have created is found by
        tag and terminated (verified), and the row says ``create_failed`` or ``terminated``.
        A crash instead leaves the row in ``intent`` for ``resources reconcile``.
        """
        request = plan.request
        row_spec = {
            "instance_type": request["instance_type"]["name"],
            "market": "spot" if plan.spec.spot else "on-demand",
            "image_id": request["ami"]["image_id"],
            "name": request["name"],
            "candidates": request["candidates"],
        }
        with self.lifecycle.track(
            "aws", KIND, job_id=job_id, spec=row_spec, region=request["region"]
        ) as intent:
            crash_point("aws.create.intent_written")
            try:
                instance, market = self._place(plan, intent, job_id)
            except BaseException:
                settle_failed_create(self.ctx, self.lifecycle, intent)
                raise
            crash_point("aws.create.after_call")
            price = self._price(plan, market, instance.zone)
            row = self.lifecycle.created(
                intent,
                cloud_id=instance.id,
                state=instance.state,
                rate_usd_per_hour=price.usd_per_hour,
                zone=instance.zone,
            )
            # what was placed and where its rate came from (cost reports, spot refresh)
            row = self.lifecycle.ledger.update_spec(row.id, market=market, rate=price.to_dict())
            if price.note:
                self.lifecycle.ledger.add_event(
                    "resource.rate", price.note, job_id=job_id, resource_id=row.id
                )
        crash_point("aws.create.ledger_updated")
        return row, instance

    def _place(self, plan: LaunchPlan, intent: Resource, job_id: str | None) -> tuple[Instance, str]:
        request = plan.request
        name = request["name"] or f"runctl-{intent.id}"
        tag_specs = [
            {"ResourceType": "instance", "Tags": runctl_tags(KIND, intent.id, job_id=job_id, name=name)},
            {
                "ResourceType": "volume",
                "Tags": runctl_tags("root-volume", intent.id, job_id=job_id, name=name),
            },
        ]
        candidates = request["candidates"]
        refused: list[str] = []
        for n, candidate in enumerate(candidates):
            market, zone = candidate["market"], candidate["zone"]
            params = {
                **request["run_instances"],
                "ClientToken": intent.client_token if n == 0 else f"{intent.client_token}-{n}",
                "TagSpecifications": tag_specs,
                "Placement": {"AvailabilityZone": zone},
            }
            if market == "spot":
                params["InstanceMarketOptions"] = market_options(request["max_price"])
            try:
                return self._run(params, intent.id), market
            except CapacityError as exc:
                refused.append(f"{market} in {zone} ({error_code(exc) or exc})")
                if n + 1 < len(candidates):
                    following = candidates[n + 1]
                    self.ctx.progress(
                        f"no {market} capacity for {params['InstanceType']} in {zone}; "
                        f"trying {following['market']} in {following['zone']}"
                    )
        spot_only = plan.spec.spot and all(c["market"] == "spot" for c in candidates)
        raise CapacityError(
            f"no capacity for {request['instance_type']['name']} in {request['region']}: "
            f"refused {', '.join(refused)}",
            provider="aws",
            operation="run_instances",
            hint="try again later, another instance type or region"
            + (", or allow on-demand with --fallback" if spot_only else ""),
        )

    def _run(self, params: dict[str, Any], ledger_id: str) -> Instance:
        """One placement, retried on throttling, adopting what an earlier try may have made."""
        return create_once(
            self.ctx,
            lambda: Instance.from_api(self.ctx.client().run_instances(**params)["Instances"][0]),
            lambda: self.find_by_resource(ledger_id),
            operation=f"run_instances {params['InstanceType']}",
        )

    def _price(self, plan: LaunchPlan, market: str, zone: str | None) -> Rate:
        rates = plan.request["rates"]
        data = rates["spot"].get(zone or "") if market == "spot" else rates["on-demand"]
        if data is None:  # spot in a zone the plan did not price (cannot happen, but never guess)
            data = rates["on-demand"]
        return Rate(**data)

    # -- state changes ------------------------------------------------------------------------

    def start(self, instance_id: str, *, force: bool = False, allow_over_limit: bool = False) -> Instance:
        """Start a stopped instance; returns once it is running."""
        instance = self._owned(instance_id, force, "start")
        if instance.state in DEAD_ENDS["running"]:
            raise self._wrong_state(instance, "start", "it is gone; create a new one")
        if instance.state in ("pending", "running"):
            return self.wait(instance_id, "running")
        if instance.state == "stopping":
            instance = self.wait(instance_id, "stopped")
        self.check_guard(1, allow=allow_over_limit)
        self.ctx.call(
            "start_instances",
            operation=f"start {instance_id}",
            resource_id=instance_id,
            InstanceIds=[instance_id],
        )
        return self.wait(instance_id, "running")

    def stop(self, instance_id: str, *, force: bool = False) -> Instance:
        """Stop a running instance; returns once it is stopped."""
        instance = self._owned(instance_id, force, "stop")
        if instance.state in DEAD_ENDS["stopped"]:
            raise self._wrong_state(instance, "stop", "there is nothing left to stop")
        if instance.state in ("stopping", "stopped"):
            return self.wait(instance_id, "stopped")
        if instance.market == "spot":
            raise self._wrong_state(
                instance, "stop", "it is a one-time spot instance: those can only be terminated"
            )
        if instance.state == "pending":
            self.wait(instance_id, "running")
        self.ctx.call(
            "stop_instances",
            operation=f"stop {instance_id}",
            resource_id=instance_id,
            InstanceIds=[instance_id],
        )
        return self.wait(instance_id, "stopped")

    def terminate(self, instance_id: str, *, force: bool = False) -> Instance:
        """Terminate an instance; returns once EC2 reports it terminated.

        If that does not happen the error says so and the ledger keeps the last state it knew.
        """
        instance = self._owned(instance_id, force, "terminate")
        try:
            self._terminate(instance)
        except RunctlError as exc:
            row = self.lifecycle.ledger.find_resource("aws", instance_id)
            if row is not None:
                self.lifecycle.ledger.add_event(
                    "resource.release_failed", f"terminate failed: {exc}"[:500], resource_id=row.id
                )
            raise
        found = self.sync(instance_id)
        return found if found is not None else replace(instance, state="terminated")

    def release(self, resource: Resource) -> str:
        """ResourceProvider.release for instances: idempotent, verified."""
        instance = self.lookup(resource)
        if instance is None or instance.state == "terminated":
            return "terminated"
        self._terminate(instance)
        return "terminated"

    def _terminate(self, instance: Instance) -> None:
        if instance.state == "terminated":
            return
        self.ctx.call(
            "terminate_instances",
            operation=f"terminate {instance.id}",
            resource_id=instance.id,
            InstanceIds=[instance.id],
        )
        self._wait_state(instance.id, "terminated")

    def wait(self, instance_id: str, state: str, *, timeout: float | None = None) -> Instance:
        """Wait until the instance is in ``state``; record it in the ledger; return it."""
        if state not in DEAD_ENDS:
            raise ValidationError(
                f"cannot wait for state {state!r}", hint=f"choose one of: {', '.join(DEAD_ENDS)}"
            )
        check_id(instance_id, "instance")
        self._wait_state(instance_id, state, timeout=timeout)
        found = self.sync(instance_id)
        return found if found is not None else _gone(instance_id)

    def _wait_state(self, instance_id: str, target: str, *, timeout: float | None = None) -> None:
        def probe() -> tuple[bool, str]:
            instance = self.describe(instance_id)
            if instance is None:
                if target == "terminated":
                    return True, "terminated"
                raise NotFoundError(f"instance {instance_id} disappeared", resource_id=instance_id)
            if instance.state in DEAD_ENDS[target]:
                raise ResourceError(
                    f"instance {instance_id} is {instance.state}; it will never be {target}",
                    resource_id=instance_id,
                    resource_state=instance.state,
                    hint="it was terminated (for spot: reclaimed by AWS); create a new one",
                )
            return instance.state == target, instance.state

        self.ctx.wait_until(probe, what=f"instance {target}", resource_id=instance_id, timeout=timeout)

    def sync(self, instance_id: str) -> Instance | None:
        """Bring the ledger row of ``instance_id`` (if any) to the state EC2 reports now."""
        instance = self.describe(instance_id)
        row = self.lifecycle.ledger.find_resource("aws", instance_id)
        state = instance.state if instance is not None else "terminated"
        if row is not None and row.state != state:
            self.lifecycle.transition(row, state, detail="observed")
        return instance

    def _owned(self, instance_id: str, force: bool, action: str) -> Instance:
        instance = self.require(instance_id)
        row = self.lifecycle.ledger.find_resource("aws", instance_id)
        ensure_owned("instance", instance_id, row=row, tags=instance.tags, force=force, action=action)
        return instance

    @staticmethod
    def _wrong_state(instance: Instance, action: str, why: str) -> ResourceError:
        return ResourceError(
            f"cannot {action} instance {instance.id}: it is {instance.state}; {why}",
            resource_id=instance.id,
            resource_state=instance.state,
            operation=action,
            hint="'runctl aws status ID' shows its state",
        )


def _gone(instance_id: str) -> Instance:
    """An instance EC2 no longer lists (terminated long enough ago to be forgotten)."""
    return Instance(instance_id, "terminated", "", None, "on-demand", None, None, None, None)


def market_options(max_price: float | None) -> dict[str, Any]:
    """``InstanceMarketOptions`` of a spot attempt: one-time, terminated on interruption."""
    options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if max_price:
        options["MaxPrice"] = f"{max_price:.6f}"
    return {"MarketType": "spot", "SpotOptions": options}


def first_attempt(request: dict[str, Any]) -> dict[str, Any]:
    """The ``run_instances`` parameters of a plan's first attempt, as ``--dry-run`` shows them:
    its zone and market included; the client token and tags come from the ledger row at apply."""
    candidate = request["candidates"][0]
    params = {**request["run_instances"], "Placement": {"AvailabilityZone": candidate["zone"]}}
    if candidate["market"] == "spot":
        params["InstanceMarketOptions"] = market_options(request["max_price"])
    return params
