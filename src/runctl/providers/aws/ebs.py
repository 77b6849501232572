"""EBS volumes and snapshots: create (intent first), attach, detach, snapshot, delete, list.

Decisions the issue left open, recorded here:

* Volumes are recorded and tagged like instances (ledger kind ``volume``, tag ``runctl:kind=
  volume``). ``--persistent`` sets the ledger's persistent flag and the ``runctl:persistent=true``
  tag: cleanup (and a job's cleanup-on-failure) never removes such a volume, and ``ebs delete``
  needs ``--force`` for it.
* Zone: ``--az``, else the region's first available zone. A volume only attaches to an instance
  in its own zone; runctl checks that before the call (moto attaches across zones), and the
  check for ``aws create --data-volume`` happens before the instance is created.
* ``detach`` always passes ``InstanceId`` (EC2 accepts it; moto fails without it).
* Snapshots are recorded as kind ``snapshot`` and persistent (a backup made on purpose is never
  swept by cleanup; ``ebs delete snap-…`` removes one). ``create_snapshot`` takes no ClientToken,
  so recovery after a crash is by tag only. Their rate is the snapshot $/GB-month × the volume
  size: an upper bound, since a snapshot stores only the blocks in use.
* Billing: a volume bills from ``creating`` until deleted, attached or not; a snapshot while it
  is ``pending`` or ``completed``. A volume's rate includes its provisioned IOPS / throughput
  extras (gp3 above the free baseline, io1, io2 by tier; see :mod:`.pricing`), prorated per
  second like the storage itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runctl.core.errors import NotFoundError, ResourceError, RunctlError, ValidationError
from runctl.core.ledger import Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.testhooks import crash_point
from runctl.providers.aws import pricing
from runctl.providers.aws.context import (
    TAG_KIND,
    TAG_MANAGED,
    TAG_PERSISTENT,
    TAG_RESOURCE,
    AwsContext,
    check_id,
    create_once,
    ensure_owned,
    runctl_tags,
    settle_failed_create,
    tag_dict,
)
from runctl.providers.aws.ec2 import Instances
from runctl.providers.base import ManagedResource

VOLUME = "volume"
SNAPSHOT = "snapshot"
BILLABLE = {
    VOLUME: frozenset({"creating", "available", "in-use"}),
    SNAPSHOT: frozenset({"pending", "completed"}),
}
#: (min GB, max GB) per volume type, from the EBS documentation.
SIZE_LIMITS = {
    "gp3": (1, 65536),
    "gp2": (1, 16384),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
IOPS_LIMITS = {"gp3": (3000, 80000), "io1": (100, 64000), "io2": (100, 256000)}
THROUGHPUT_LIMITS = {"gp3": (125, 2000)}
DEVICE = re.compile(r"/dev/(?:sd|xvd)[b-z][a-z]?")


@dataclass(frozen=True)
class Volume:
    """One EBS volume as ``describe_volumes`` shows it."""

    id: str
    state: str
    size_gb: int
    volume_type: str
    zone: str
    iops: int | None
    throughput: int | None
    attachments: list[dict[str, str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Volume:
        created = data.get("CreateTime")
        return cls(
            id=data["VolumeId"],
            state=data["State"],
            size_gb=int(data["Size"]),
            volume_type=data.get("VolumeType", "standard"),
            zone=data["AvailabilityZone"],
            iops=data.get("Iops"),
            throughput=data.get("Throughput"),
            attachments=[
                {"instance_id": a["InstanceId"], "device": a.get("Device", ""), "state": a.get("State", "")}
                for a in data.get("Attachments", [])
            ],
            tags=tag_dict(data.get("Tags")),
            created_at=created.timestamp() if created is not None else None,
        )

    @property
    def attached_to(self) -> str | None:
        return self.attachments[0]["instance_id"] if self.attachments else None

    def managed(self) -> ManagedResource:
        return ManagedResource(
            provider="aws",
            kind=VOLUME,
            cloud_id=self.id,
            state=self.state,
            zone=self.zone,
            tags=self.tags,
            created_at=self.created_at,
            detail={
                "size_gb": self.size_gb,
                "volume_type": self.volume_type,
                "iops": self.iops,
                "throughput": self.throughput,
                "attached_to": self.attached_to,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "kind": VOLUME, "ledger_id": self.tags.get(TAG_RESOURCE)}


@dataclass(frozen=True)
class Snapshot:
    """One EBS snapshot as ``describe_snapshots`` shows it."""

    id: str
    state: str
    volume_id: str | None
    size_gb: int
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Snapshot:
        started = data.get("StartTime")
        return cls(
            id=data["SnapshotId"],
            state=data["State"],
            volume_id=data.get("VolumeId"),
            size_gb=int(data.get("VolumeSize", 0)),
            description=data.get("Description", ""),
            tags=tag_dict(data.get("Tags")),
            created_at=started.timestamp() if started is not None else None,
        )

    def managed(self) -> ManagedResource:
        return ManagedResource(
            provider="aws",
            kind=SNAPSHOT,
            cloud_id=self.id,
            state=self.state,
            zone=None,
            tags=self.tags,
            created_at=self.created_at,
            detail={"size_gb": self.size_gb, "volume_id": self.volume_id},
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "kind": SNAPSHOT, "ledger_id": self.tags.get(TAG_RESOURCE)}


class Volumes:
    """EBS volumes and snapshots in one region, recorded in the ledger through ``lifecycle``."""

    def __init__(self, ctx: AwsContext, lifecycle: Lifecycle, instances: Instances) -> None:
        self.ctx = ctx
        self.lifecycle = lifecycle
        self.instances = instances

    # -- reading ------------------------------------------------------------------------------

    def describe(self, volume_id: str) -> Volume | None:
        try:
            found = self.ctx.call(
                "describe_volumes",
                operation=f"describe {volume_id}",
                resource_id=volume_id,
                VolumeIds=[volume_id],
            )["Volumes"]
        except NotFoundError:
            return None
        return Volume.from_api(found[0]) if found else None

    def require(self, volume_id: str, *, argument: str | None = None) -> Volume:
        check_id(volume_id, VOLUME, argument=argument)
        volume = self.describe(volume_id)
        if volume is None:
            raise NotFoundError(
                f"volume {volume_id} does not exist in {self.ctx.region}",
                resource_id=volume_id,
                hint="check the id and the region; 'runctl aws ebs list' shows runctl's volumes",
            )
        return volume

    def describe_snapshot(self, snapshot_id: str) -> Snapshot | None:
        try:
            found = self.ctx.call(
                "describe_snapshots",
                operation=f"describe {snapshot_id}",
                resource_id=snapshot_id,
                SnapshotIds=[snapshot_id],
            )["Snapshots"]
        except NotFoundError:
            return None
        return Snapshot.from_api(found[0]) if found else None

    def list_volumes(self) -> list[Volume]:
        """runctl's volumes in the region (root volumes of instances excluded), oldest first."""
        found = self.ctx.paginate(
            "describe_volumes",
            "Volumes",
            Filters=[
                {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
                {"Name": f"tag:{TAG_KIND}", "Values": [VOLUME]},
            ],
        )
        return sorted((Volume.from_api(v) for v in found), key=lambda v: (v.created_at or 0, v.id))

    def list_snapshots(self) -> list[Snapshot]:
        found = self.ctx.paginate(
            "describe_snapshots",
            "Snapshots",
            OwnerIds=["self"],
            Filters=[{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}],
        )
        return sorted((Snapshot.from_api(s) for s in found), key=lambda s: (s.created_at or 0, s.id))

    def find_by_resource(self, ledger_id: str, kind: str) -> Volume | Snapshot | None:
        """The volume or snapshot tagged ``runctl:resource=ledger_id``, if it exists."""
        return self._find_snapshot(ledger_id) if kind == SNAPSHOT else self._find_volume(ledger_id)

    def _find_volume(self, ledger_id: str) -> Volume | None:
        found = self.ctx.paginate(
            "describe_volumes",
            "Volumes",
            Filters=[
                {"Name": f"tag:{TAG_RESOURCE}", "Values": [ledger_id]},
                {"Name": f"tag:{TAG_KIND}", "Values": [VOLUME]},
            ],
        )
        return Volume.from_api(found[0]) if found else None

    def _find_snapshot(self, ledger_id: str) -> Snapshot | None:
        found = self.ctx.paginate(
            "describe_snapshots",
            "Snapshots",
            OwnerIds=["self"],
            Filters=[{"Name": f"tag:{TAG_RESOURCE}", "Values": [ledger_id]}],
        )
        return Snapshot.from_api(found[0]) if found else None

    def lookup(self, resource: Resource) -> Volume | Snapshot | None:
        """What a ledger row points at: by cloud id, else (intent rows) by tag."""
        if resource.cloud_id:
            if resource.kind == SNAPSHOT:
                return self.describe_snapshot(resource.cloud_id)
            return self.describe(resource.cloud_id)
        return self.find_by_resource(resource.id, resource.kind)

    # -- create -------------------------------------------------------------------------------

    def create(
        self,
        *,
        size_gb: int,
        volume_type: str = "gp3",
        iops: int | None = None,
        throughput: int | None = None,
        zone: str | None = None,
        persistent: bool = False,
        name: str | None = None,
        job_id: str | None = None,
        wait: bool = True,
    ) -> tuple[Resource, Volume]:
        """Create a volume: every argument checked first, then intent row, tagged call, ledger."""
        _check_volume_args(size_gb, volume_type, iops, throughput)
        zone = self._zone(zone)
        region = self.ctx.region
        spec = {
            "size_gb": size_gb,
            "volume_type": volume_type,
            "iops": iops,
            "throughput": throughput,
            "name": name,
        }
        with self.lifecycle.track(
            "aws", VOLUME, job_id=job_id, spec=spec, region=region, zone=zone, persistent=persistent
        ) as intent:
            crash_point("aws.ebs.create.intent_written")
            params: dict[str, Any] = {
                "AvailabilityZone": zone,
                "Size": size_gb,
                "VolumeType": volume_type,
                "ClientToken": intent.client_token,
                "TagSpecifications": [
                    {
                        "ResourceType": "volume",
                        "Tags": runctl_tags(
                            VOLUME,
                            intent.id,
                            job_id=job_id,
                            name=name or f"runctl-{intent.id}",
                            extra={TAG_PERSISTENT: "true"} if persistent else None,
                        ),
                    }
                ],
            }
            if iops is not None:
                params["Iops"] = iops
            if throughput is not None:
                params["Throughput"] = throughput
            try:
                volume = create_once(
                    self.ctx,
                    lambda: Volume.from_api(self.ctx.client().create_volume(**params)),
                    lambda: self._find_volume(intent.id),
                    operation=f"create_volume {size_gb} GB {volume_type}",
                )
            except BaseException:
                settle_failed_create(self.ctx, self.lifecycle, intent)
                raise
            crash_point("aws.ebs.create.after_call")
            price = pricing.ebs(volume_type, size_gb, region, iops=iops, throughput=throughput)
            row = self.lifecycle.created(
                intent,
                cloud_id=volume.id,
                state=volume.state,
                rate_usd_per_hour=price.usd_per_hour,
                zone=zone,
            )
        crash_point("aws.ebs.create.ledger_updated")
        if wait:
            volume = self._wait(volume.id, "available")
            row = self._sync(volume.id, volume.state) or row
        return row, volume

    def _zone(self, zone: str | None) -> str:
        zones = self.instances.region_zones()
        if zone is None:
            return zones[0]
        if zone not in zones:
            raise ValidationError(
                f"--az {zone!r} is not an availability zone of {self.ctx.region}",
                hint=f"zones of {self.ctx.region}: {', '.join(zones)}",
            )
        return zone

    # -- attach, detach, snapshot, delete -----------------------------------------------------

    def check_attachable(self, volume: Volume, *, zone: str | None, instance_id: str | None = None) -> None:
        """Refuse (before any call) a volume that is in use or in another zone than ``zone``."""
        if volume.state != "available" and volume.attached_to != instance_id:
            raise ValidationError(
                f"volume {volume.id} is {volume.state}"
                + (f" (attached to {volume.attached_to})" if volume.attached_to else ""),
                resource_id=volume.id,
                resource_state=volume.state,
                hint=f"detach it first: runctl aws ebs detach {volume.id}",
            )
        if zone is not None and volume.zone != zone:
            raise ValidationError(
                f"volume {volume.id} is in {volume.zone}, the instance "
                + (f"{instance_id} is " if instance_id else "would be ")
                + f"in {zone}: a volume attaches only in its own zone",
                resource_id=volume.id,
                hint=f"use --az {volume.zone}, or snapshot the volume and create a copy in {zone}",
            )

    def attach(self, volume_id: str, instance_id: str, *, device: str = "/dev/sdf") -> Volume:
        """Attach; returns once the volume is in use by the instance."""
        if not DEVICE.fullmatch(device):
            raise ValidationError(
                f"--device {device!r} is not a device name EC2 accepts for data volumes",
                hint="use /dev/sdf … /dev/sdp (or /dev/xvdf …)",
            )
        volume = self.require(volume_id)
        instance = self.instances.require(instance_id)
        self.check_attachable(volume, zone=instance.zone, instance_id=instance_id)
        if volume.attached_to == instance_id:
            return volume
        if instance.state == "pending":
            instance = self.instances.wait(instance_id, "running")
        if instance.state not in ("running", "stopped"):
            raise ResourceError(
                f"cannot attach to instance {instance_id}: it is {instance.state}",
                resource_id=instance_id,
                resource_state=instance.state,
                hint="attach to a running or stopped instance",
            )
        self.ctx.call(
            "attach_volume",
            operation=f"attach {volume_id} to {instance_id}",
            resource_id=volume_id,
            VolumeId=volume_id,
            InstanceId=instance_id,
            Device=device,
        )
        volume = self._wait(volume_id, "in-use")
        self._sync(volume_id, volume.state)
        return volume

    def detach(self, volume_id: str, *, force: bool = False) -> Volume:
        """Detach from whatever instance holds it; returns once the volume is available."""
        volume = self.require(volume_id)
        if volume.attached_to is None:
            return volume
        self.ctx.call(
            "detach_volume",
            operation=f"detach {volume_id}",
            resource_id=volume_id,
            VolumeId=volume_id,
            InstanceId=volume.attached_to,  # always: moto fails without it, EC2 accepts it
            Force=force,
        )
        volume = self._wait(volume_id, "available")
        self._sync(volume_id, volume.state)
        return volume

    def snapshot(
        self, volume_id: str, *, description: str | None = None, job_id: str | None = None, wait: bool = False
    ) -> tuple[Resource, Snapshot]:
        """Snapshot a volume (recorded, tagged, persistent)."""
        volume = self.require(volume_id)
        region = self.ctx.region
        spec = {"volume_id": volume_id, "size_gb": volume.size_gb, "description": description}
        with self.lifecycle.track(
            "aws", SNAPSHOT, job_id=job_id, spec=spec, region=region, zone=volume.zone, persistent=True
        ) as intent:
            crash_point("aws.ebs.snapshot.intent_written")
            tags = runctl_tags(
                SNAPSHOT,
                intent.id,
                job_id=job_id,
                name=f"runctl-{intent.id} of {volume_id}",
                extra={TAG_PERSISTENT: "true"},
            )
            try:
                snap = create_once(
                    self.ctx,
                    lambda: Snapshot.from_api(
                        self.ctx.client().create_snapshot(
                            VolumeId=volume_id,
                            Description=description or f"runctl snapshot of {volume_id}",
                            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
                        )
                    ),
                    lambda: self._find_snapshot(intent.id),
                    operation=f"create_snapshot of {volume_id}",
                )
            except BaseException:
                settle_failed_create(self.ctx, self.lifecycle, intent)
                raise
            crash_point("aws.ebs.snapshot.after_call")
            price = pricing.ebs("snapshot", volume.size_gb, region)
            row = self.lifecycle.created(
                intent, cloud_id=snap.id, state=snap.state, rate_usd_per_hour=price.usd_per_hour
            )
        if wait:
            self.ctx.wait_until(
                lambda: self._snapshot_probe(snap.id), what="snapshot completed", resource_id=snap.id
            )
            row = self._sync(snap.id, "completed") or row
        return row, snap

    def _snapshot_probe(self, snapshot_id: str) -> tuple[bool, str]:
        snap = self.describe_snapshot(snapshot_id)
        if snap is None or snap.state == "error":
            raise ResourceError(f"snapshot {snapshot_id} failed", resource_id=snapshot_id)
        return snap.state == "completed", snap.state

    def delete(self, cloud_id: str, *, force: bool = False) -> str:
        """Delete a volume (``vol-…``) or snapshot (``snap-…``) runctl owns; verified."""
        row = self.lifecycle.ledger.find_resource("aws", cloud_id)
        if cloud_id.startswith("snap-"):
            check_id(cloud_id, SNAPSHOT)
            snap = self.describe_snapshot(cloud_id)
            if snap is None:
                raise NotFoundError(
                    f"snapshot {cloud_id} does not exist in {self.ctx.region}", resource_id=cloud_id
                )
            ensure_owned("snapshot", cloud_id, row=row, tags=snap.tags, force=force, action="delete")
        else:
            volume = self.require(cloud_id)
            ensure_owned("volume", cloud_id, row=row, tags=volume.tags, force=force, action="delete")
            if (
                volume.tags.get(TAG_PERSISTENT) == "true" or (row is not None and row.persistent)
            ) and not force:
                raise ValidationError(
                    f"volume {cloud_id} is persistent; refusing to delete it",
                    resource_id=cloud_id,
                    hint="add --force to delete it and its data",
                )
            if volume.attached_to:
                raise ValidationError(
                    f"volume {cloud_id} is attached to {volume.attached_to}",
                    resource_id=cloud_id,
                    resource_state=volume.state,
                    hint=f"detach it first: runctl aws ebs detach {cloud_id}",
                )
        try:
            final = self._delete(cloud_id)
        except RunctlError as exc:
            if row is not None:
                self.lifecycle.ledger.add_event(
                    "resource.release_failed", f"delete failed: {exc}"[:500], resource_id=row.id
                )
            raise
        self._sync(cloud_id, final)
        return final

    def release(self, resource: Resource) -> str:
        """ResourceProvider.release for volumes and snapshots: idempotent, verified."""
        found = self.lookup(resource)
        if found is None:
            return "deleted"
        if isinstance(found, Volume) and found.attached_to:
            self.detach(found.id)
        return self._delete(found.id)

    def _delete(self, cloud_id: str) -> str:
        if cloud_id.startswith("snap-"):
            self.ctx.call(
                "delete_snapshot", operation=f"delete {cloud_id}", resource_id=cloud_id, SnapshotId=cloud_id
            )
            gone = lambda: self.describe_snapshot(cloud_id) is None  # noqa: E731
        else:
            self.ctx.call(
                "delete_volume", operation=f"delete {cloud_id}", resource_id=cloud_id, VolumeId=cloud_id
            )
            gone = lambda: (v := self.describe(cloud_id)) is None or v.state == "deleted"  # noqa: E731
        self.ctx.wait_until(
            lambda: (True, "deleted") if gone() else (False, "deleting"),
            what="deletion",
            resource_id=cloud_id,
        )
        return "deleted"

    def _wait(self, volume_id: str, target: str) -> Volume:
        def probe() -> tuple[bool, str]:
            volume = self.describe(volume_id)
            if volume is None or volume.state in ("error", "deleted", "deleting"):
                raise ResourceError(
                    f"volume {volume_id} is {volume.state if volume else 'gone'}; it will never be {target}",
                    resource_id=volume_id,
                    resource_state=volume.state if volume else "deleted",
                )
            attached = all(a["state"] == "attached" for a in volume.attachments)
            done = volume.state == target and (target != "in-use" or attached)
            return done, volume.state

        self.ctx.wait_until(probe, what=f"volume {target}", resource_id=volume_id)
        return self.require(volume_id)

    def _sync(self, cloud_id: str, state: str) -> Resource | None:
        row = self.lifecycle.ledger.find_resource("aws", cloud_id)
        if row is not None and row.state != state:
            return self.lifecycle.transition(row, state, detail="observed")
        return row


def _check_volume_args(size_gb: int, volume_type: str, iops: int | None, throughput: int | None) -> None:
    if volume_type not in SIZE_LIMITS:
        raise ValidationError(
            f"--type {volume_type!r} is not an EBS volume type", hint=f"use one of: {', '.join(SIZE_LIMITS)}"
        )
    low, high = SIZE_LIMITS[volume_type]
    if not low <= size_gb <= high:
        raise ValidationError(
            f"--size {size_gb} is out of range for {volume_type}",
            hint=f"{volume_type} volumes are {low}–{high} GB",
        )
    for flag, value, limits in (
        ("--iops", iops, IOPS_LIMITS),
        ("--throughput", throughput, THROUGHPUT_LIMITS),
    ):
        if value is None:
            continue
        if volume_type not in limits:
            raise ValidationError(
                f"{flag} does not apply to {volume_type} volumes",
                hint=f"{flag} applies to: {', '.join(limits)}",
            )
        low, high = limits[volume_type]
        if not low <= value <= high:
            raise ValidationError(
                f"{flag} {value} is out of range for {volume_type}", hint=f"use {low}–{high}"
            )
    if volume_type in ("io1", "io2") and iops is None:
        raise ValidationError(f"{volume_type} volumes need --iops", hint="e.g. --iops 3000")
