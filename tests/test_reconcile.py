"""`resources reconcile` and `resources cleanup` against a moto server: a CLI killed with SIGKILL
at each step of a create leaves nothing unaccounted once reconcile has run; drift in both
directions is found; cleanup never touches persistent or protected resources."""

from __future__ import annotations

import json
import signal
import time

import pytest

from runctl.core.ledger import Ledger
from runctl.providers.aws.context import TAG_MANAGED, TAG_PROTECT, TAG_RESOURCE, TAG_USER, current_user
from runctl.providers.base import LaunchOptions
from runctl.workflows.reconcile import apply_reconcile, plan_cleanup, plan_reconcile, run_cleanup
from tests.support.aws import al2023_image, alive_instances, boto, make_provider, unaccounted
from tests.support.fault_proxy import ec2_error


def _create(provider, **options):  # type: ignore[no-untyped-def]
    plan = provider.plan(provider.spec(LaunchOptions(instance_type="t3.micro", **options)))
    machine = provider.apply(plan)[0]
    return provider.ledger.get_resource(machine.resource_id), machine


def _reconcile(provider, *, apply: bool = True):  # type: ignore[no-untyped-def]
    providers = {"aws": provider}
    actions = plan_reconcile(provider.ledger, providers, user=current_user())
    if apply:
        apply_reconcile(provider.lifecycle, providers, [a for a in actions if a.action != "foreign"])
    return actions


def _tagged_instance(moto_url: str, tags: dict[str, str]) -> str:
    answer = boto("ec2", moto_url).run_instances(
        ImageId=al2023_image(moto_url),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return str(answer["Instances"][0]["InstanceId"])


# -- crash recovery ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("aws.create.intent_written", "create_failed"),
        ("aws.create.after_call", "running"),
        ("aws.create.ledger_updated", "running"),
    ],
)
def test_sigkill_at_each_create_step_then_reconcile_leaves_nothing_unaccounted(aws, cli, step, expected):
    crashed = cli("aws", "create", "t3.micro", env={"RUNCTL_CRASH_AT": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    ledger = Ledger.open_default()
    (row,) = ledger.list_resources()
    if step == "aws.create.after_call":
        # The worst moment: the machine exists, the ledger only has the intent.
        assert row.state == "intent" and row.cloud_id is None
        assert len(unaccounted(aws, ledger)) == 1

    # the crashed process is known dead: no create can be in flight, so no grace is needed
    result = cli("resources", "reconcile", "--apply", "--intent-grace", "0", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["applied"] is True

    ledger = Ledger.open_default()
    assert unaccounted(aws, ledger) == set()
    (row,) = ledger.list_resources()
    assert row.state == expected
    if expected == "running":
        assert row.cloud_id in alive_instances(aws) and row.rate_usd_per_hour == pytest.approx(0.0104)
        assert ledger.usage(resource_id=row.id)[-1].ended_at is None  # billing is now visible
    # A second reconcile has nothing left to do.
    again = json.loads(cli("resources", "reconcile", "--intent-grace", "0", "-o", "json").stdout)
    assert again["actions"] == []


def test_sigkill_after_volume_create_call_is_recovered(aws, cli):
    crashed = cli("aws", "ebs", "create", "--size", "5", env={"RUNCTL_CRASH_AT": "aws.ebs.create.after_call"})
    assert crashed.returncode == -signal.SIGKILL
    volumes = boto("ec2", aws).describe_volumes()["Volumes"]
    assert len(volumes) == 1

    assert cli("resources", "reconcile", "--apply").returncode == 0
    (row,) = Ledger.open_default().list_resources()
    assert row.kind == "volume" and row.cloud_id == volumes[0]["VolumeId"] and row.state == "available"
    assert row.rate_usd_per_hour == pytest.approx(0.08 * 5 / 730, rel=1e-4)


def test_intent_row_resolved_by_tag_when_two_instances_carry_it(aws):
    """moto's ClientToken is not idempotent: a duplicate is adopted, not left unaccounted."""
    provider = make_provider()
    intent = provider.ledger.record_intent(provider="aws", kind="instance", region="us-east-1")
    first = _tagged_instance(aws, {TAG_MANAGED: "true", TAG_RESOURCE: intent.id, TAG_USER: current_user()})
    second = _tagged_instance(aws, {TAG_MANAGED: "true", TAG_RESOURCE: intent.id, TAG_USER: current_user()})

    actions = _reconcile(provider)
    assert sorted(a.action for a in actions) == ["adopt", "record_created"]
    assert unaccounted(aws, provider.ledger) == set()
    rows = provider.ledger.list_resources()
    assert {r.cloud_id for r in rows} == {first, second}
    adopted = next(r for r in rows if r.id != intent.id)
    tags = {t["Key"]: t["Value"] for t in alive_instances(aws)[adopted.cloud_id]["Tags"]}
    assert tags[TAG_RESOURCE] == adopted.id  # retagged to point at its own row


# -- drift in both directions -----------------------------------------------------------------


def test_instance_terminated_outside_runctl_is_marked_gone(aws):
    provider = make_provider()
    row, machine = _create(provider)
    boto("ec2", aws).terminate_instances(InstanceIds=[machine.cloud_id])

    planned = _reconcile(provider, apply=False)
    assert [(a.action, a.resource_id) for a in planned] == [("gone", row.id)]
    assert provider.ledger.get_resource(row.id).state != "terminated"  # the plan changed nothing

    _reconcile(provider)
    after = provider.ledger.get_resource(row.id)
    assert after.state == "terminated"
    assert all(i.ended_at is not None for i in provider.ledger.usage(resource_id=row.id))


def test_ledger_saying_gone_while_the_machine_runs_is_corrected(aws):
    provider = make_provider()
    row, _ = _create(provider)
    provider.ledger.transition(row.id, "terminated", billable=False, detail="a lie")

    actions = _reconcile(provider)
    assert [(a.action, a.to_state) for a in actions] == [("update_state", "running")]
    assert provider.ledger.get_resource(row.id).state == "running"
    assert provider.ledger.usage(resource_id=row.id)[-1].ended_at is None


def test_untracked_runctl_instances_are_adopted_but_other_users_are_only_reported(aws):
    provider = make_provider()
    mine = _tagged_instance(aws, {TAG_MANAGED: "true", TAG_RESOURCE: "r-lost0001", TAG_USER: current_user()})
    theirs = _tagged_instance(
        aws, {TAG_MANAGED: "true", TAG_RESOURCE: "r-other001", TAG_USER: "someone-else"}
    )
    _tagged_instance(aws, {"Name": "not runctl"})

    actions = {a.cloud_id: a.action for a in _reconcile(provider)}
    assert actions == {mine: "adopt", theirs: "foreign"}
    (row,) = provider.ledger.list_resources()
    assert row.cloud_id == mine and row.state == "running" and row.spec["adopted"] is True


def test_cli_reconcile_without_apply_changes_nothing(aws, cli):
    _tagged_instance(aws, {TAG_MANAGED: "true", TAG_RESOURCE: "r-lost0002", TAG_USER: current_user()})
    shown = cli("resources", "reconcile")
    assert shown.returncode == 0, shown.stderr
    assert "adopt" in shown.stdout and "--apply" in shown.stdout
    assert Ledger.open_default().list_resources() == []


def test_reconcile_without_aws_configured_or_used_is_a_no_op(cli, monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    result = cli("resources", "reconcile", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"applied": False, "actions": []}


# -- cleanup ----------------------------------------------------------------------------------


def test_cleanup_releases_only_what_it_may(aws):
    provider = make_provider()
    plain, plain_machine = _create(provider)
    protected, protected_machine = _create(provider)
    boto("ec2", aws).create_tags(
        Resources=[protected_machine.cloud_id], Tags=[{"Key": TAG_PROTECT, "Value": "true"}]
    )
    kept, kept_volume = provider.volumes.create(size_gb=5, zone="us-east-1a", persistent=True)
    scratch, scratch_volume = provider.volumes.create(size_gb=5, zone="us-east-1a")
    provider.volumes.attach(scratch_volume.id, plain_machine.cloud_id)

    items = plan_cleanup(provider.ledger, {"aws": provider})
    plan = {i.resource.id: (i.action, i.reason) for i in items}
    assert plan[plain.id][0] == "release" and plan[scratch.id][0] == "release"
    assert plan[protected.id] == ("skip", "tagged runctl:protect=true")
    assert plan[kept.id] == ("skip", "persistent")
    assert [i.resource.kind for i in items if i.action == "release"] == [
        "instance",
        "volume",
    ]  # machines first

    done = run_cleanup(provider.lifecycle, items)
    outcomes = {i.resource.id: i.outcome for i in done}
    assert outcomes[plain.id] == "terminated" and outcomes[scratch.id] == "deleted"
    assert set(alive_instances(aws)) == {protected_machine.cloud_id}
    volumes = {v["VolumeId"] for v in boto("ec2", aws).describe_volumes()["Volumes"]}
    assert kept_volume.id in volumes and scratch_volume.id not in volumes
    assert provider.ledger.get_resource(plain.id).state == "terminated"
    assert provider.ledger.get_resource(protected.id).state in ("pending", "running")


def test_cleanup_older_than_skips_young_resources(aws):
    provider = make_provider()
    row, _ = _create(provider)
    assert plan_cleanup(provider.ledger, {"aws": provider}, older_than=3600) == []
    later = time.time() + 7200
    (item,) = plan_cleanup(provider.ledger, {"aws": provider}, older_than=3600, now=later)
    assert item.resource.id == row.id and item.action == "release"


def test_cli_cleanup_dry_run_then_confirmation_then_yes(aws, cli):
    provider = make_provider()
    _, machine = _create(provider)

    dry = cli("resources", "cleanup", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    assert [i["action"] for i in json.loads(dry.stdout)["items"]] == ["release"]
    assert machine.cloud_id in alive_instances(aws)

    unconfirmed = cli("resources", "cleanup")  # stdin is not a terminal
    assert unconfirmed.returncode == 64 and "--yes" in unconfirmed.stderr
    assert machine.cloud_id in alive_instances(aws)

    done = cli("resources", "cleanup", "--yes", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert [i["outcome"] for i in json.loads(done.stdout)["items"]] == ["terminated"]
    assert alive_instances(aws) == {}


def test_cleanup_failure_is_reported_and_the_row_stays_live(fault_proxy, aws, cli):
    provider = make_provider()
    row, machine = _create(provider)
    fault_proxy.fail_first(1000, ec2_error("UnauthorizedOperation", 403), action="TerminateInstances")

    result = cli("resources", "cleanup", "--yes")
    assert result.returncode == 80, result.stderr
    assert "could not release 1 resource" in result.stderr and row.id in result.stderr
    assert Ledger.open_default().get_resource(row.id).state in ("pending", "running")
    assert machine.cloud_id in alive_instances(aws)


def test_resources_list_and_summary(aws, cli):
    provider = make_provider()
    row, _ = _create(provider)
    provider.volumes.create(size_gb=10, zone="us-east-1a")

    listed = json.loads(cli("resources", "list", "-o", "json").stdout)
    assert {(r["kind"], r["provider"]) for r in listed} == {("instance", "aws"), ("volume", "aws")}
    assert next(r for r in listed if r["id"] == row.id)["cost_usd"] >= 0

    summary = json.loads(cli("resources", "summary", "-o", "json").stdout)
    assert summary["live"] == 2
    assert summary["usd_per_hour"] == pytest.approx(0.0104 + 0.08 * 10 / 730, rel=1e-3)
