"""AwsProvider: EC2 and EBS behind runctl's provider interface.

* ``plan`` checks everything a launch needs with read-only calls (instance type, zones, image,
  the data volume's zone and state) and prices it; ``apply`` runs the guard, then per machine:
  launch (intent first) → wait → attach the data volume. If a step after a create fails, what
  this call created is released (verified) and the ledger says so; only then does the error
  reach the caller.
* ``start`` runs one command on a machine through SSM RunCommand (``AWS-RunShellScript``), once
  the machine is running and registered with SSM (:mod:`.ssm`): the environment is exported and
  every argument shell-quoted, so hostile arguments (quotes, ``; rm -rf ~``, newlines) arrive
  unchanged as argv. Returns the SSM command id.
* ``lookup``/``release``/``is_billable`` and the discovery methods used by ``resources
  reconcile`` (``find``, ``list_managed``, ``rate_for``, ``retag``, ``gone_state``) dispatch on the
  ledger kind: ``instance`` (EC2), ``volume`` and ``snapshot`` (EBS).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from runctl.core import prices
from runctl.core.config import Config
from runctl.core.errors import NotFoundError, ResourceError, RunctlError, ValidationError
from runctl.core.ledger import Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.retry import RetryPolicy
from runctl.core.testhooks import crash_point
from runctl.providers.aws import ebs, ec2, pricing, ssm
from runctl.providers.aws.ami import AmiResolver
from runctl.providers.aws.context import TAG_RESOURCE, AwsContext, check_id
from runctl.providers.base import (
    ComputeProvider,
    LaunchOptions,
    LaunchPlan,
    Machine,
    MachineSpec,
    ManagedResource,
    Rate,
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AwsProvider(ComputeProvider):
    """EC2 instances, EBS volumes and snapshots in one region, tracked in ``ledger``."""

    name = "aws"
    machine_kinds = frozenset({ec2.KIND})
    #: An instance in one of these no longer runs the job (stopped by someone, or going away).
    lost_states = frozenset({"terminated", "shutting-down", "stopping", "stopped"})

    def __init__(
        self,
        ledger: Ledger,
        config: Config | None = None,
        *,
        region: str | None = None,
        api: RetryPolicy | None = None,
        poll: RetryPolicy | None = None,
        progress: Callable[[str], None] | None = None,
        ami_owners: tuple[str, ...] = ("amazon",),
    ) -> None:
        config = config or Config()
        self.config = config
        self.ledger = ledger
        self.ctx = AwsContext(
            config.aws,
            region=region,
            api=api or RetryPolicy.for_cloud_api("AWS API call", config.retry),
            poll=poll or RetryPolicy.for_polling("AWS wait", settings=config.retry),
            progress=progress,
        )
        self.lifecycle = Lifecycle(ledger, {self.name: self}, retry=self.ctx.api)
        self.amis = AmiResolver(self.ctx, owners=ami_owners)
        self.instances = ec2.Instances(
            self.ctx, self.lifecycle, self.amis, stale_days=config.cost.price_stale_days
        )
        self.volumes = ebs.Volumes(self.ctx, self.lifecycle, self.instances)

    @classmethod
    def from_config(
        cls, ledger: Ledger, config: Config, *, progress: Callable[[str], None] | None = None
    ) -> AwsProvider:
        return cls(ledger, config, progress=progress)

    def configured(self) -> bool:
        """A region resolves (``[aws] region`` or boto3's chain); raises ConfigError otherwise."""
        return bool(self.ctx.region)

    def spec(self, options: LaunchOptions) -> MachineSpec:
        """A MachineSpec from the launch options, defaults from ``[aws]``."""
        aws = self.config.aws
        if options.gpus:
            raise ValidationError(
                "AWS machines are chosen by instance type, not by GPU name",
                hint="give an instance type (e.g. g5.xlarge); 'runctl cost prices --provider aws' lists them",
            )
        if options.max_price is not None and not 0 < options.max_price < float("inf"):
            raise ValidationError(
                f"--max-price must be a positive number, got {options.max_price}", hint="e.g. --max-price 0.5"
            )
        if options.disk_gb is not None and not 8 <= options.disk_gb <= 16384:
            raise ValidationError(f"--root-size {options.disk_gb} is out of range", hint="use 8–16384 (GB)")
        extra: dict[str, Any] = {
            "max_price": options.max_price,
            "fallback": aws.fallback_to_on_demand if options.fallback is None else options.fallback,
            "iam_instance_profile": options.iam_instance_profile,
            "data_volume": self.resolve(options.data_volume, "volume") if options.data_volume else None,
            "name": options.name,
        }
        return MachineSpec(
            instance_type=options.instance_type or aws.default_instance_type,
            spot=aws.use_spot if options.spot is None else options.spot,
            count=options.count,
            zone=options.zone,
            image=options.image,
            disk_gb=options.disk_gb,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    def resolve(self, ref: str, kind: str) -> str:
        """The cloud id for ``ref``: an EC2 id (checked for form) or a ledger id (``r-…``)."""
        if not ref.startswith("r-"):
            return check_id(ref, kind)
        row = self.ledger.get_resource(ref)
        if row.provider != self.name or row.kind != kind:
            raise ValidationError(
                f"{ref} is a {row.provider} {row.kind}, not an AWS {kind}",
                hint="'runctl resources list' shows what each id is",
            )
        found = self.find(row) if row.cloud_id is None else None
        cloud_id = row.cloud_id or (found.cloud_id if found else None)
        if cloud_id is None:
            raise NotFoundError(
                f"{ref} was never created ({row.state})",
                resource_id=ref,
                hint="'runctl resources reconcile' settles rows like this",
            )
        return cloud_id

    # -- ComputeProvider ----------------------------------------------------------------------

    def plan(self, spec: MachineSpec) -> LaunchPlan:
        """Validate and price ``spec``; read-only (see the module docstring)."""
        volume_id = spec.extra.get("data_volume")
        if volume_id:
            if spec.count != 1:
                raise ValidationError("--data-volume attaches one volume to one machine; count must be 1")
            volume = self.volumes.require(volume_id, argument="--data-volume")
            self.volumes.check_attachable(volume, zone=spec.zone)
            spec = replace(spec, zone=volume.zone)
        return self.instances.plan(spec)

    def apply(
        self,
        plan: LaunchPlan,
        *,
        job_id: str | None = None,
        allow_over_limit: bool = False,
        wait: bool = False,
    ) -> list[Machine]:
        """Create the plan's machines; on a failed step release what this call created."""
        self.instances.check_guard(plan.spec.count, allow=allow_over_limit)
        volume_id = plan.spec.extra.get("data_volume")
        made: list[Resource] = []
        machines: list[Machine] = []
        try:
            for _ in range(plan.spec.count):
                row, instance = self.instances.launch(plan, job_id=job_id)
                made.append(row)
                if wait or volume_id:
                    instance = self.instances.wait(instance.id, "running")
                if volume_id:
                    self.volumes.attach(volume_id, instance.id)
                    crash_point("aws.create.volume_attached")
                machines.append(
                    Machine(
                        row.id,
                        instance.id,
                        instance.state,
                        instance.zone,
                        instance.public_ip or instance.private_ip,
                    )
                )
        except BaseException as exc:
            self._release_created(made, exc)
            raise
        return machines

    def _release_created(self, made: list[Resource], cause: BaseException) -> None:
        stuck: list[str] = []
        for row in made:
            try:
                released = self.lifecycle.release(self.ledger.get_resource(row.id))
                self.ledger.add_event(
                    "resource.released",
                    f"released {released.cloud_id}: a later step failed ({cause})"[:500],
                    job_id=row.job_id,
                    resource_id=row.id,
                )
                self.ctx.progress(f"released {released.cloud_id} ({row.id}) after the failure")
            except RunctlError as exc:
                stuck.append(f"{row.cloud_id} ({row.id}): {exc}")
        if stuck:
            raise ResourceError(
                f"{cause}; and could not release what was created: {'; '.join(stuck)}",
                operation="cleanup after failed create",
                hint="they are still recorded as live: retry with 'runctl resources cleanup'",
            ) from cause

    def start(self, machine: Machine, argv: Sequence[str], env: Mapping[str, str]) -> str:
        """Run ``argv`` with ``env`` on ``machine`` via SSM RunCommand once the machine is running
        and registered with SSM (bounded: :mod:`.ssm`); returns the command id."""
        return ssm.send_when_registered(
            self.ctx,
            self.instances,
            machine.cloud_id,
            script=shell_script(argv, env),
            comment=f"runctl {machine.resource_id}",
            timeout=self.config.remote.agent_start_timeout,
        )

    def start_report(self, machine: Resource, handle: str) -> str:
        """What the cloud knows of a start command (``handle``: the SSM command id)."""
        return ssm.command_report(self.ctx, handle, machine.cloud_id or "")

    def catalogue_rate(self, spec: MachineSpec) -> tuple[Rate, str]:
        """The catalogue's on-demand rate of ``spec``'s instance type in the region."""
        region = self.ctx.region
        return (
            pricing.on_demand(spec.instance_type or "", region),
            f"{spec.count} x {spec.instance_type} (on-demand in {region})",
        )

    def refresh_prices(self, *, region: str | None = None, item: str | None = None) -> tuple[int, str]:
        """The AWS Price List API for the catalogue's instance types (those matching ``item``)."""
        region = region or self.ctx.region
        types = sorted(
            {
                e.item
                for e in prices.entries(self.name)
                if e.section == pricing.ON_DEMAND and (item is None or item.lower() in e.item.lower())
            }
        )
        policy = RetryPolicy.for_cloud_api("AWS Price List", self.config.retry)
        found = pricing.fetch_on_demand(types, region, policy=policy)
        if found:
            prices.store(self.name, pricing.ON_DEMAND, {region: found})
        return len(found), f"AWS Price List, {region}"

    def stop_refusal(self, spec: MachineSpec) -> str | None:
        if spec.spot:
            return "a spot instance cannot be stopped (EC2 only terminates one-time spot instances)"
        return None

    def stop(self, resource: Resource) -> Resource:
        """Stop an on-demand instance (verified ``stopped``; its EBS root volume stays)."""
        self.instances.stop(self._cloud_id(resource))
        return self.ledger.get_resource(resource.id)

    def restart(self, resource: Resource) -> Resource:
        """Start a stopped instance again (verified ``running``)."""
        self.instances.start(self._cloud_id(resource))
        return self.ledger.get_resource(resource.id)

    def _cloud_id(self, resource: Resource) -> str:
        if not resource.cloud_id:
            raise NotFoundError(
                f"{resource.id} was never created ({resource.state})", resource_id=resource.id
            )
        return resource.cloud_id

    def billing_minimum_s(self, kind: str) -> float:
        return ec2.BILLING_MINIMUM_S if kind in (ec2.KIND, ebs.VOLUME) else 0.0

    def refresh_rate(self, resource: Resource) -> float | None:
        """A running spot instance's current spot price for its zone, recorded when it moved.

        An unbelievable quote (see :mod:`.pricing`; moto's constant one) changes nothing: the
        rate recorded at launch, an upper bound, stays.
        """
        spec = resource.spec
        if resource.kind != ec2.KIND or spec.get("market") != "spot" or resource.is_gone:
            return None
        instance_type = str(spec.get("instance_type"))
        on_demand = pricing.on_demand(instance_type, resource.region or self.ctx.region)
        quote = pricing.spot_quotes(self.ctx, instance_type).get(resource.zone or "")
        price = pricing.spot(quote, on_demand, stale_days=self.config.cost.price_stale_days)
        if price.source != "spot-price-history" or price.usd_per_hour == resource.rate_usd_per_hour:
            return None
        assert price.usd_per_hour is not None
        self.ledger.set_rate(resource.id, price.usd_per_hour)
        self.ledger.update_spec(resource.id, rate=price.to_dict())
        self.ledger.add_event(
            "resource.rate",
            f"spot price of {instance_type} in {resource.zone} is now ${price.usd_per_hour:g}/h "
            f"(was ${resource.rate_usd_per_hour or 0:g}/h)",
            job_id=resource.job_id,
            resource_id=resource.id,
        )
        return price.usd_per_hour

    # -- ResourceProvider ---------------------------------------------------------------------

    def lookup(self, resource: Resource) -> str | None:
        found = self.find(resource)
        return found.state if found is not None else None

    def release(self, resource: Resource) -> str:
        if resource.kind == ec2.KIND:
            return self.instances.release(resource)
        return self.volumes.release(resource)

    def is_billable(self, kind: str, state: str) -> bool:
        if kind == ec2.KIND:
            return state in ec2.BILLABLE_STATES
        return state in ebs.BILLABLE.get(kind, frozenset())

    # -- discovery (resources reconcile / cleanup) --------------------------------------------

    def find(self, resource: Resource) -> ManagedResource | None:
        """What the cloud has for a ledger row (by cloud id, or by tag for intent rows)."""
        found = (
            self.instances.lookup(resource) if resource.kind == ec2.KIND else self.volumes.lookup(resource)
        )
        return None if found is None else replace(found.managed(), region=self.ctx.region)

    def list_managed(self) -> list[ManagedResource]:
        """Every live runctl-tagged instance, volume and snapshot in the region."""
        volumes = self.volumes
        found = [
            *(i.managed() for i in self.instances.list_instances()),
            *(v.managed() for v in volumes.list_volumes()),
            *(s.managed() for s in volumes.list_snapshots()),
        ]
        return [replace(f, region=self.ctx.region) for f in found]

    def rate_for(self, found: ManagedResource) -> Rate:
        """The rate to record for a resource found in the cloud (reconcile cannot see the plan)."""
        region = self.ctx.region
        if found.kind == ec2.KIND:
            on_demand = pricing.on_demand(found.detail["instance_type"], region)
            if found.detail.get("market") == "spot":
                return pricing.spot(None, on_demand)
            return on_demand
        if found.kind == ebs.SNAPSHOT:
            return pricing.ebs("snapshot", found.detail["size_gb"], region)
        detail = found.detail
        return pricing.ebs(
            detail["volume_type"],
            detail["size_gb"],
            region,
            iops=detail.get("iops"),
            throughput=detail.get("throughput"),
        )

    def retag(self, found: ManagedResource, ledger_id: str) -> None:
        """Point a resource's ``runctl:resource`` tag at its (new) ledger row."""
        self.ctx.call(
            "create_tags",
            operation=f"tag {found.cloud_id}",
            resource_id=found.cloud_id,
            Resources=[found.cloud_id],
            Tags=[{"Key": TAG_RESOURCE, "Value": ledger_id}],
        )

    def gone_state(self, kind: str) -> str:
        return "terminated" if kind == ec2.KIND else "deleted"


def shell_script(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """A POSIX shell script that runs ``argv`` exactly, with ``env`` exported."""
    if not argv:
        raise ValidationError("no command to start", hint="give the program and its arguments")
    bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
    if bad:
        raise ValidationError(
            f"environment variable name(s) {', '.join(map(repr, bad))} are not valid shell names",
            hint="use letters, digits and underscores, not starting with a digit",
        )
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append("exec " + shlex.join(argv))
    return "\n".join(lines)
