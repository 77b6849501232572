"""EBS volumes and snapshots against a moto server: tracked and tagged like instances, zone and
state checked by runctl before the API is asked, persistent volumes protected."""

from __future__ import annotations

import json

import pytest

from runctl.core.errors import NotFoundError, ValidationError
from runctl.core.ledger import Ledger
from runctl.providers.aws.context import TAG_KIND, TAG_MANAGED, TAG_PERSISTENT, TAG_RESOURCE
from runctl.providers.base import LaunchOptions
from tests.support.aws import boto, form, lost_response, make_provider
from tests.support.fault_proxy import ec2_error


def _volume_tags(moto_url: str, volume_id: str) -> dict[str, str]:
    volume = boto("ec2", moto_url).describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return {t["Key"]: t["Value"] for t in volume.get("Tags", [])}


def _volume_ids(moto_url: str) -> set[str]:
    return {v["VolumeId"] for v in boto("ec2", moto_url).describe_volumes()["Volumes"]}


def _instance(provider, zone: str):  # type: ignore[no-untyped-def]
    plan = provider.plan(provider.spec(LaunchOptions(instance_type="t3.micro", zone=zone)))
    return provider.apply(plan, wait=True)[0]


def test_create_is_recorded_first_tagged_and_priced(fault_proxy, aws):
    provider = make_provider()
    row, volume = provider.volumes.create(
        size_gb=100, volume_type="gp3", iops=4000, throughput=250, zone="us-east-1b"
    )

    assert volume.state == "available" and volume.zone == "us-east-1b" and volume.size_gb == 100
    tags = _volume_tags(aws, volume.id)
    assert tags[TAG_MANAGED] == "true" and tags[TAG_RESOURCE] == row.id and tags[TAG_KIND] == "volume"
    assert TAG_PERSISTENT not in tags
    sent = form(next(r for r in fault_proxy.requests if r.action == "CreateVolume"))
    assert sent["ClientToken"] == [row.client_token]
    assert sent["Iops"] == ["4000"] and sent["Throughput"] == ["250"]

    assert row.cloud_id == volume.id and row.state == "available" and row.zone == "us-east-1b"
    # storage + the gp3 extras above the free 3000 IOPS / 125 MB/s (cost-truth pricing)
    assert row.rate_usd_per_hour == pytest.approx((0.08 * 100 + 1000 * 0.005 + 125 * 0.04) / 730, rel=1e-4)
    (interval,) = provider.ledger.usage(resource_id=row.id)
    assert interval.ended_at is None  # a volume bills while it exists


def test_lost_create_answer_adopts_the_volume(fault_proxy, aws):
    provider = make_provider()
    lost_response(fault_proxy, "CreateVolume")
    row, volume = provider.volumes.create(size_gb=10, zone="us-east-1a")
    assert fault_proxy.count("CreateVolume") == 1
    assert _volume_ids(aws) == {volume.id}
    assert row.cloud_id == volume.id


def test_attach_detach_snapshot_delete_lifecycle(fault_proxy, aws):
    provider = make_provider()
    machine = _instance(provider, "us-east-1a")
    row, volume = provider.volumes.create(size_gb=20, zone="us-east-1a")
    ledger = provider.ledger

    attached = provider.volumes.attach(volume.id, machine.cloud_id, device="/dev/sdg")
    assert attached.state == "in-use" and attached.attached_to == machine.cloud_id
    assert attached.attachments[0]["device"] == "/dev/sdg"
    assert ledger.get_resource(row.id).state == "in-use"
    # Attaching again to the same instance is a no-op.
    assert provider.volumes.attach(volume.id, machine.cloud_id).attached_to == machine.cloud_id

    snap_row, snap = provider.volumes.snapshot(volume.id, description="before the run", wait=True)
    assert snap_row.persistent and snap_row.kind == "snapshot" and snap_row.cloud_id == snap.id
    assert ledger.get_resource(snap_row.id).state == "completed"

    with pytest.raises(ValidationError, match="attached to"):
        provider.volumes.delete(volume.id)
    detached = provider.volumes.detach(volume.id)
    assert detached.state == "available" and detached.attached_to is None
    detach = form(next(r for r in fault_proxy.requests if r.action == "DetachVolume"))
    assert detach["InstanceId"] == [machine.cloud_id]  # always sent (moto fails without it)
    assert ledger.get_resource(row.id).state == "available"

    assert provider.volumes.delete(volume.id) == "deleted"
    assert volume.id not in _volume_ids(aws)
    assert ledger.get_resource(row.id).state == "deleted"
    assert ledger.usage(resource_id=row.id)[-1].ended_at is not None
    assert provider.volumes.delete(snap.id) == "deleted"
    assert ledger.get_resource(snap_row.id).state == "deleted"


def test_attach_in_another_zone_is_refused_before_the_call(fault_proxy, aws):
    provider = make_provider()
    machine = _instance(provider, "us-east-1a")
    _, volume = provider.volumes.create(size_gb=10, zone="us-east-1c")
    with pytest.raises(ValidationError, match="attaches only in its own zone"):
        provider.volumes.attach(volume.id, machine.cloud_id)
    assert fault_proxy.count("AttachVolume") == 0


def test_attach_a_volume_in_use_elsewhere_is_refused(aws):
    provider = make_provider()
    first, second = _instance(provider, "us-east-1a"), _instance(provider, "us-east-1a")
    _, volume = provider.volumes.create(size_gb=10, zone="us-east-1a")
    provider.volumes.attach(volume.id, first.cloud_id)
    with pytest.raises(ValidationError, match=f"attached to {first.cloud_id}"):
        provider.volumes.attach(volume.id, second.cloud_id)


def test_persistent_volume_needs_force_to_delete(aws, cli):
    created = cli("aws", "ebs", "create", "--size", "8", "--persistent", "-o", "id")
    assert created.returncode == 0, created.stderr
    volume_id = created.stdout.strip()
    assert _volume_tags(aws, volume_id)[TAG_PERSISTENT] == "true"
    row = Ledger.open_default().find_resource("aws", volume_id)
    assert row is not None and row.persistent

    refused = cli("aws", "ebs", "delete", volume_id)
    assert refused.returncode == 65 and "persistent" in refused.stderr and "--force" in refused.stderr
    assert volume_id in _volume_ids(aws)

    forced = cli("aws", "ebs", "delete", row.id, "--force", "-o", "json")  # by ledger id
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout) == {"id": volume_id, "state": "deleted"}
    assert volume_id not in _volume_ids(aws)


def test_volumes_runctl_does_not_own_need_force(aws):
    foreign = boto("ec2", aws).create_volume(Size=5, AvailabilityZone="us-east-1a")["VolumeId"]
    provider = make_provider()
    with pytest.raises(ValidationError, match="not created by runctl"):
        provider.volumes.delete(foreign)
    assert provider.volumes.delete(foreign, force=True) == "deleted"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size_gb": 0}, "--size 0 is out of range for gp3"),
        ({"size_gb": 10, "volume_type": "gp9"}, "not an EBS volume type"),
        ({"size_gb": 10, "volume_type": "gp2", "iops": 3000}, "--iops does not apply to gp2"),
        ({"size_gb": 10, "volume_type": "gp3", "throughput": 50}, "--throughput 50 is out of range"),
        ({"size_gb": 10, "volume_type": "io2"}, "io2 volumes need --iops"),
        ({"size_gb": 10, "zone": "us-east-1q"}, "not an availability zone of us-east-1"),
    ],
)
def test_bad_volume_input_is_refused_before_any_create(fault_proxy, aws, kwargs, needle):
    provider = make_provider()
    with pytest.raises(ValidationError, match=needle.replace("(", r"\(")):
        provider.volumes.create(**kwargs)
    assert fault_proxy.count("CreateVolume") == 0
    assert provider.ledger.list_resources() == []


def test_bad_ids_and_devices(fault_proxy, aws, cli):
    provider = make_provider()
    with pytest.raises(ValidationError, match="not an EC2 volume id"):
        provider.volumes.detach("vol-nope")
    with pytest.raises(NotFoundError, match="does not exist"):
        provider.volumes.detach("vol-0123456789abcdef0")
    result = cli("aws", "ebs", "attach", "vol-0123456789abcdef0", "i-0123456789abcdef0", "--device", "sdf")
    assert result.returncode == 65 and "--device 'sdf'" in result.stderr


def test_failed_create_leaves_no_volume_and_a_settled_row(fault_proxy, aws):
    provider = make_provider()
    fault_proxy.fail_first(1, ec2_error("VolumeLimitExceeded"), action="CreateVolume")
    with pytest.raises(Exception, match="VolumeLimitExceeded"):
        provider.volumes.create(size_gb=10)
    assert _volume_ids(aws) == set()
    assert [r.state for r in provider.ledger.list_resources()] == ["create_failed"]


def test_cli_list_shows_volumes_and_snapshots(aws, cli):
    provider = make_provider()
    _, volume = provider.volumes.create(size_gb=12, zone="us-east-1d")
    _, snap = provider.volumes.snapshot(volume.id)
    boto("ec2", aws).create_volume(Size=5, AvailabilityZone="us-east-1a")  # not runctl's: not listed

    listed = json.loads(cli("aws", "ebs", "list", "-o", "json").stdout)
    assert sorted((i["kind"], i["id"]) for i in listed) == [("snapshot", snap.id), ("volume", volume.id)]
    assert all(i["in_ledger"] for i in listed)
    assert next(i for i in listed if i["kind"] == "snapshot")["persistent"] is True
