"""EC2 instances against a moto server (through boto3 and AWS_ENDPOINT_URL), with faults
injected by a proxy: create on-demand/spot, ClientToken semantics, AZ and market fallback,
the instance guard, start/stop/terminate verified, bad input refused before any create."""

from __future__ import annotations

import json
import subprocess

import pytest

from runctl.core.config import AwsConfig, Config, RemoteConfig
from runctl.core.errors import (
    BudgetError,
    NotFoundError,
    QuotaError,
    ResourceError,
    RetryExhaustedError,
    ValidationError,
)
from runctl.core.ledger import Ledger
from runctl.providers.aws.context import TAG_JOB, TAG_KIND, TAG_MANAGED, TAG_PROTECT, TAG_RESOURCE, TAG_USER
from runctl.providers.aws.provider import shell_script
from runctl.providers.base import LaunchOptions
from tests.support.aws import (
    al2023_image,
    alive_instances,
    boto,
    form,
    json_error,
    lost_response,
    make_provider,
    refuse_spot,
    ssm_registry,
    unaccounted,
)
from tests.support.fault_proxy import Fault, Request, ec2_error

ZONES_T3 = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"]  # moto's t3.micro offer


def _create(provider, instance_type: str = "t3.micro", **options):  # type: ignore[no-untyped-def]
    plan = provider.plan(provider.spec(LaunchOptions(instance_type=instance_type, **options)))
    machine = provider.apply(plan)[0]
    return provider.ledger.get_resource(machine.resource_id), machine


def _foreign_instance(moto_url: str, tags: dict[str, str] | None = None) -> str:
    answer = boto("ec2", moto_url).run_instances(
        ImageId=al2023_image(moto_url),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}
        ]
        if tags
        else [],
    )
    return str(answer["Instances"][0]["InstanceId"])


# -- create ------------------------------------------------------------------------------------


def test_on_demand_create_writes_intent_first_tags_and_prices(fault_proxy, aws):
    provider = make_provider()
    row, machine = _create(provider, name="trainer")

    instance = alive_instances(aws)[machine.cloud_id]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags[TAG_MANAGED] == "true"
    assert tags[TAG_RESOURCE] == row.id
    assert tags[TAG_KIND] == "instance"
    assert tags[TAG_USER] and TAG_JOB in tags
    assert tags["Name"] == "trainer"
    assert instance.get("InstanceLifecycle") != "spot"

    assert row.cloud_id == machine.cloud_id and row.state in ("pending", "running")
    assert row.rate_usd_per_hour == pytest.approx(0.0104)  # catalogue, us-east-1 t3.micro
    assert row.zone == machine.zone == ZONES_T3[0]

    runs = [r for r in fault_proxy.requests if r.action == "RunInstances"]
    assert len(runs) == 1
    sent = form(runs[0])
    assert sent["ClientToken"] == [row.client_token]
    assert sent["MetadataOptions.HttpTokens"] == ["required"]
    # The intent row existed before the create call: its event precedes the "created as" one.
    kinds = [(e.kind, e.message) for e in provider.ledger.events(limit=50) if e.resource_id == row.id]
    assert kinds[0][0] == "resource.intent"
    assert any("created as " + machine.cloud_id in m for _, m in kinds[1:])
    # pending is billable (see ec2 module docstring): a usage interval is open at the rate.
    (interval,) = provider.ledger.usage(resource_id=row.id)
    assert interval.ended_at is None and interval.rate_usd_per_hour == pytest.approx(0.0104)


def test_spot_create_uses_instance_market_options_and_distrusts_moto_spot_price(fault_proxy, aws):
    provider = make_provider()
    row, machine = _create(provider, spot=True, max_price=0.5)

    assert alive_instances(aws)[machine.cloud_id]["InstanceLifecycle"] == "spot"
    sent = form(next(r for r in fault_proxy.requests if r.action == "RunInstances"))
    assert sent["InstanceMarketOptions.MarketType"] == ["spot"]
    assert sent["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == ["one-time"]
    assert sent["InstanceMarketOptions.SpotOptions.MaxPrice"] == ["0.500000"]
    assert fault_proxy.count("RequestSpotInstances") == 0
    # moto's spot price (0.00001, dated 2006) is not believed: the on-demand bound is recorded.
    assert row.rate_usd_per_hour == pytest.approx(0.0104)
    notes = [e.message for e in provider.ledger.events(limit=50) if e.kind == "resource.rate"]
    assert notes and "upper bound" in notes[0] and "2006" in notes[0]


def test_retry_after_throttling_resends_the_same_client_token(fault_proxy, aws):
    provider = make_provider()
    fault_proxy.fail_first(3, ec2_error("RequestLimitExceeded", 503), action="RunInstances")
    row, machine = _create(provider)

    runs = [r for r in fault_proxy.requests if r.action == "RunInstances"]
    assert len(runs) == 4
    assert {form(r)["ClientToken"][0] for r in runs} == {row.client_token}
    assert set(alive_instances(aws)) == {machine.cloud_id}


def test_lost_answer_is_recovered_by_tag_not_by_a_second_instance(fault_proxy, aws):
    """The create reached AWS but its answer was lost: the retry adopts it (real-EC2 semantics)."""
    provider = make_provider()
    lost_response(fault_proxy, "RunInstances")
    row, machine = _create(provider)

    assert fault_proxy.count("RunInstances") == 1
    assert list(alive_instances(aws)) == [machine.cloud_id]
    assert row.cloud_id == machine.cloud_id


def test_throttling_that_never_ends_is_bounded_and_leaks_nothing(fault_proxy, aws):
    provider = make_provider()
    fault_proxy.fail_first(10_000, ec2_error("RequestLimitExceeded", 503), action="RunInstances")
    plan = provider.plan(provider.spec(LaunchOptions(instance_type="t3.micro")))
    with pytest.raises(RetryExhaustedError):
        provider.apply(plan)
    assert fault_proxy.count("RunInstances") == 4  # FAST_API.max_attempts, for the first zone only
    assert alive_instances(aws) == {}
    (row,) = provider.ledger.list_resources()
    assert row.state == "create_failed"


def test_capacity_errors_walk_the_zones(fault_proxy, aws):
    provider = make_provider()
    fault_proxy.fail_first(2, ec2_error("InsufficientInstanceCapacity"), action="RunInstances")
    row, machine = _create(provider)

    assert fault_proxy.count("RunInstances") == 3
    assert machine.zone == ZONES_T3[2] == row.zone
    tokens = [form(r)["ClientToken"][0] for r in fault_proxy.requests if r.action == "RunInstances"]
    assert tokens == [row.client_token, f"{row.client_token}-1", f"{row.client_token}-2"]
    assert list(alive_instances(aws)) == [machine.cloud_id]


def test_spot_refused_everywhere_falls_back_to_on_demand(fault_proxy, aws):
    provider = make_provider()
    refuse_spot(fault_proxy)
    row, machine = _create(provider, spot=True)

    assert fault_proxy.count("RunInstances") == len(ZONES_T3) + 1
    instance = alive_instances(aws)[machine.cloud_id]
    assert instance.get("InstanceLifecycle") != "spot"
    assert row.rate_usd_per_hour == pytest.approx(0.0104)
    assert list(alive_instances(aws)) == [machine.cloud_id]


def test_spot_without_fallback_fails_cleanly_after_every_zone(fault_proxy, aws, cli):
    refuse_spot(fault_proxy)
    result = cli("aws", "create", "t3.micro", "--spot", "--no-fallback")
    assert result.returncode == 69, result.stderr
    assert "no capacity for t3.micro" in result.stderr and "--fallback" in result.stderr
    assert fault_proxy.count("RunInstances") == len(ZONES_T3)
    assert alive_instances(aws) == {}
    assert [r.state for r in Ledger.open_default().list_resources()] == ["create_failed"]


def test_quota_error_fails_at_once(fault_proxy, aws):
    provider = make_provider()
    fault_proxy.fail_first(1, ec2_error("VcpuLimitExceeded"), action="RunInstances")
    with pytest.raises(QuotaError) as caught:
        _create(provider)
    assert "quota" in (caught.value.hint or "")
    assert fault_proxy.count("RunInstances") == 1
    assert alive_instances(aws) == {}


def test_instance_guard_refuses_past_the_limit_without_yes(aws):
    provider = make_provider(Config(aws=AwsConfig(max_running_instances=1)))
    _create(provider)
    plan = provider.plan(provider.spec(LaunchOptions(instance_type="t3.micro")))
    with pytest.raises(BudgetError) as caught:
        provider.apply(plan)
    assert "max_running_instances" in str(caught.value) and "--yes" in (caught.value.hint or "")
    assert len(alive_instances(aws)) == 1
    assert len(provider.ledger.list_resources()) == 1  # refused before the intent row

    provider.apply(plan, allow_over_limit=True)
    assert len(alive_instances(aws)) == 2


def test_instances_of_others_do_not_count_against_the_guard(aws):
    _foreign_instance(aws)
    provider = make_provider(Config(aws=AwsConfig(max_running_instances=1)))
    _create(provider)
    assert len(alive_instances(aws)) == 2


# -- bad input, refused before any create -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["zz.big"], "unknown instance type 'zz.big'"),
        (["t3.micro", "--az", "us-east-1z"], "not an availability zone of us-east-1"),
        (
            ["p4d.24xlarge", "--az", "us-east-1f", "--ami", "ami-0123456789abcdef0"],
            "not offered in us-east-1f",
        ),
        (["t3.micro", "--ami", "ami-0123456789abcdef0"], "does not exist in us-east-1"),
        (["t3.micro", "--ami", "ubuntu"], "not an EC2 image id"),
        (["t3.micro", "--data-volume", "vol-xyz"], "not an EC2 volume id"),
        (["t3.micro", "--max-price", "-1"], "--max-price must be a positive number"),
    ],
)
def test_bad_create_input_is_a_validation_error_before_any_create(fault_proxy, aws, cli, args, needle):
    result = cli("aws", "create", *args)
    assert result.returncode == 65, result.stderr
    assert needle in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert fault_proxy.count("RunInstances") == 0
    assert Ledger.open_default().list_resources() == []


def test_image_for_another_architecture_is_refused(aws):
    provider = make_provider()
    with pytest.raises(ValidationError, match="is for arm64 but the instance type needs x86_64"):
        provider.plan(
            provider.spec(LaunchOptions(instance_type="t3.micro", image=al2023_image(aws, "arm64")))
        )


def test_type_not_offered_in_the_region(aws):
    provider = make_provider(region="eu-west-3")
    with pytest.raises(ValidationError, match=r"p4d\.24xlarge is not offered in region eu-west-3"):
        provider.plan(provider.spec(LaunchOptions(instance_type="p4d.24xlarge")))


def test_gpu_type_without_a_deep_learning_ami_is_a_clear_error(aws):
    provider = make_provider()
    with pytest.raises(NotFoundError) as caught:
        provider.plan(provider.spec(LaunchOptions(instance_type="g5.xlarge")))
    assert "no Deep Learning AMI for x86_64" in str(caught.value)
    assert "--ami" in (caught.value.hint or "")


def test_dry_run_prints_the_plan_and_creates_nothing(fault_proxy, aws, cli):
    result = cli("aws", "create", "t3.micro", "--spot", "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert len(plan["tries"]) == 10 and plan["tries"][0].startswith("spot@us-east-1")
    assert plan["tries"][-1].startswith("on-demand@us-east-1")
    assert [c["market"] for c in plan["request"]["candidates"]] == ["spot"] * 5 + ["on-demand"] * 5
    assert plan["request"]["run_instances"]["InstanceType"] == "t3.micro"
    market = plan["request"]["first_attempt"]["InstanceMarketOptions"]  # what the first attempt sends
    assert market["MarketType"] == "spot" and market["SpotOptions"]["SpotInstanceType"] == "one-time"
    first_zone = plan["request"]["candidates"][0]["zone"]
    assert plan["request"]["first_attempt"]["Placement"]["AvailabilityZone"] == first_zone
    assert fault_proxy.count("RunInstances") == 0
    assert Ledger.open_default().list_resources() == []


# -- start / stop / terminate -------------------------------------------------------------------


def test_stop_start_terminate_are_verified_and_recorded(aws):
    provider = make_provider()
    row, machine = _create(provider)
    ledger = provider.ledger

    assert provider.instances.stop(machine.cloud_id).state == "stopped"
    assert ledger.get_resource(row.id).state == "stopped"
    assert provider.instances.start(machine.cloud_id).state == "running"
    assert ledger.get_resource(row.id).state == "running"
    assert provider.instances.terminate(machine.cloud_id).state == "terminated"
    assert ledger.get_resource(row.id).state == "terminated"
    assert machine.cloud_id not in alive_instances(aws)

    intervals = ledger.usage(resource_id=row.id)
    assert len(intervals) == 2 and all(i.ended_at is not None for i in intervals)  # not billed stopped
    # Terminating again is a no-op, not an error.
    assert provider.instances.terminate(machine.cloud_id).state == "terminated"


def test_transitions_moto_would_accept_are_refused_before_any_call(fault_proxy, aws):
    provider = make_provider()
    _, machine = _create(provider)
    provider.instances.terminate(machine.cloud_id)

    with pytest.raises(ResourceError, match=r"cannot stop instance .* it is terminated"):
        provider.instances.stop(machine.cloud_id)
    with pytest.raises(ResourceError, match=r"cannot start instance .* it is terminated"):
        provider.instances.start(machine.cloud_id)
    assert fault_proxy.count("StopInstances") == 0 and fault_proxy.count("StartInstances") == 0


def test_one_time_spot_instances_cannot_be_stopped(fault_proxy, aws):
    provider = make_provider()
    _, machine = _create(provider, spot=True)
    with pytest.raises(ResourceError, match="one-time spot"):
        provider.instances.stop(machine.cloud_id)
    assert fault_proxy.count("StopInstances") == 0


def test_a_failed_terminate_leaves_the_ledger_saying_running(fault_proxy, aws):
    provider = make_provider()
    row, machine = _create(provider)
    provider.instances.wait(machine.cloud_id, "running")
    fault_proxy.fail_first(100, ec2_error("UnauthorizedOperation", 403), action="TerminateInstances")

    with pytest.raises(Exception, match="UnauthorizedOperation"):
        provider.instances.terminate(machine.cloud_id)
    after = provider.ledger.get_resource(row.id)
    assert after.state == "running"
    assert provider.ledger.usage(resource_id=row.id)[-1].ended_at is None  # still billing
    assert machine.cloud_id in alive_instances(aws)


def test_a_terminate_the_api_accepted_but_never_did_is_not_recorded_as_gone(fault_proxy, aws):
    """The API answers "shutting-down" but the machine keeps running: verification catches it."""
    provider = make_provider()
    row, machine = _create(provider)
    provider.instances.wait(machine.cloud_id, "running")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><TerminateInstancesResponse '
        'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>x</requestId><instancesSet><item>'
        f"<instanceId>{machine.cloud_id}</instanceId><currentState><code>32</code><name>shutting-down</name>"
        "</currentState><previousState><code>16</code><name>running</name></previousState></item>"
        "</instancesSet></TerminateInstancesResponse>"
    ).encode()
    fault_proxy.fail_first(100, Fault(200, body, {"Content-Type": "text/xml"}), action="TerminateInstances")

    with pytest.raises(ResourceError) as caught:
        provider.instances.terminate(machine.cloud_id)
    assert caught.value.resource_state == "running"
    assert provider.ledger.get_resource(row.id).state == "running"


def test_foreign_instances_need_force_and_malformed_ids_never_reach_aws(fault_proxy, aws, cli):
    foreign = _foreign_instance(aws)
    refused = cli("aws", "terminate", foreign)
    assert refused.returncode == 65 and "not created by runctl" in refused.stderr
    assert "--force" in refused.stderr
    assert foreign in alive_instances(aws)

    protected = _foreign_instance(aws, {TAG_MANAGED: "true", TAG_PROTECT: "true"})
    refused = cli("aws", "terminate", protected)
    assert refused.returncode == 65 and "runctl:protect=true" in refused.stderr

    forced = cli("aws", "terminate", foreign, "--force", "-o", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["state"] == "terminated"
    assert foreign not in alive_instances(aws)

    before = len(fault_proxy.requests)
    for bad in ("i-123", "vol-0123456789abcdef0", "i-0123456789ABCDEF0"):
        result = cli("aws", "stop", bad)
        assert result.returncode == 65 and "not an EC2 instance id" in result.stderr
    assert len(fault_proxy.requests) == before


def test_cli_create_id_then_status_wait_list_terminate_by_ledger_id(aws, cli):
    created = cli("aws", "create", "t3.micro", "--wait", "-o", "id")
    assert created.returncode == 0, created.stderr
    instance_id = created.stdout.strip()
    assert instance_id.startswith("i-") and instance_id in alive_instances(aws)
    row = Ledger.open_default().find_resource("aws", instance_id)
    assert row is not None and row.state == "running"

    listed = json.loads(cli("aws", "list", "-o", "json").stdout)
    assert [(i["id"], i["resource_id"], i["in_ledger"]) for i in listed] == [(instance_id, row.id, True)]
    status = json.loads(cli("aws", "status", instance_id, "-o", "json").stdout)
    assert status[0]["state"] == "running"

    stopped = cli("aws", "stop", row.id, "-o", "json")  # a ledger id works as well
    assert json.loads(stopped.stdout)["state"] == "stopped", stopped.stderr
    waited = cli("aws", "wait", instance_id, "--state", "stopped", "-o", "json")
    assert json.loads(waited.stdout)["state"] == "stopped"
    gone = cli("aws", "terminate", instance_id)
    assert gone.returncode == 0 and "terminated" in gone.stdout
    assert Ledger.open_default().get_resource(row.id).state == "terminated"


def test_wait_for_an_unreachable_state_fails_fast(aws):
    provider = make_provider()
    _, machine = _create(provider)
    provider.instances.terminate(machine.cloud_id)
    with pytest.raises(ResourceError, match="will never be running"):
        provider.instances.wait(machine.cloud_id, "running")
    with pytest.raises(ValidationError, match="cannot wait for state 'sleeping'"):
        provider.instances.wait(machine.cloud_id, "sleeping")


# -- data volume and cleanup on failure -----------------------------------------------------------


def test_data_volume_pins_the_zone_and_is_attached(aws):
    provider = make_provider()
    _, volume = provider.volumes.create(size_gb=10, zone="us-east-1c")
    _, machine = _create(provider, data_volume=volume.id)
    assert machine.zone == "us-east-1c" and machine.state == "running"
    attached = provider.volumes.require(volume.id)
    assert attached.state == "in-use" and attached.attached_to == machine.cloud_id


def test_data_volume_in_another_zone_is_refused_before_any_create(fault_proxy, aws):
    provider = make_provider()
    _, volume = provider.volumes.create(size_gb=10, zone="us-east-1c")
    with pytest.raises(ValidationError, match="is in us-east-1c, the instance would be in us-east-1a"):
        provider.plan(
            provider.spec(LaunchOptions(instance_type="t3.micro", zone="us-east-1a", data_volume=volume.id))
        )
    assert fault_proxy.count("RunInstances") == 0


def test_failed_attach_releases_the_instance_it_created(fault_proxy, aws):
    provider = make_provider()
    _, volume = provider.volumes.create(size_gb=10, zone="us-east-1b")
    fault_proxy.fail_first(1, ec2_error("VolumeInUse"), action="AttachVolume")
    plan = provider.plan(provider.spec(LaunchOptions(instance_type="t3.micro", data_volume=volume.id)))
    with pytest.raises(Exception, match="VolumeInUse"):
        provider.apply(plan)

    rows = [r for r in provider.ledger.list_resources() if r.kind == "instance"]
    assert [r.state for r in rows] == ["terminated"]
    assert alive_instances(aws) == {}
    assert any(e.kind == "resource.released" for e in provider.ledger.events(limit=100))
    assert unaccounted(aws, provider.ledger) == set()


# -- starting a command through SSM ---------------------------------------------------------------


def test_start_sends_argv_unchanged_through_ssm(fault_proxy, aws, tmp_path):
    fault_proxy.rule = ssm_registry(lambda instance_id: True)
    provider = make_provider()
    _, machine = _create(provider)
    hostile = ["'; rm -rf ~'", 'say "hi"', "two\nlines", "$HOME", "`id`", ""]
    argv = ["python3", "-c", "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['RUN_ID']]))"]
    command_id = provider.start(machine, [*argv, *hostile], {"RUN_ID": "a b'c"})

    commands = boto("ssm", aws).list_commands(CommandId=command_id)["Commands"]
    assert commands[0]["DocumentName"] == "AWS-RunShellScript"
    script = commands[0]["Parameters"]["commands"][0]
    ran = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert json.loads(ran.stdout) == [hostile, "a b'c"]


def test_start_waits_for_ssm_registration_and_retries_invalid_instance_id(fault_proxy, aws):
    """Real SSM refuses a command to a machine whose SSM agent has not registered yet."""
    looked = []

    def registered(instance_id: str) -> bool:
        looked.append(instance_id)
        return len(looked) > 3  # registers after a few looks

    fault_proxy.rule = ssm_registry(registered)
    provider = make_provider()
    _, machine = _create(provider)
    command_id = provider.start(machine, ["true"], {})
    assert boto("ssm", aws).list_commands(CommandId=command_id)["Commands"]
    assert fault_proxy.count("DescribeInstanceInformation") >= 3  # it waited for registration
    assert fault_proxy.count("SendCommand") == 1  # and sent once, when SSM could take it

    # registration shows before SendCommand takes it: InvalidInstanceId is retried
    refusals = [2]
    registry = ssm_registry(lambda instance_id: True)

    def lagging(request: Request) -> Fault | None:
        if request.action == "SendCommand" and refusals[0] > 0:
            refusals[0] -= 1
            return json_error("InvalidInstanceId")
        return registry(request)

    fault_proxy.rule = lagging
    sent = fault_proxy.count("SendCommand")
    provider.start(machine, ["true"], {})
    assert fault_proxy.count("SendCommand") - sent == 3


def test_start_on_a_machine_that_never_registers_fails_within_the_deadline(fault_proxy, aws):
    fault_proxy.rule = ssm_registry(lambda instance_id: False)
    provider = make_provider(Config(remote=RemoteConfig(agent_start_timeout=1)))
    _, machine = _create(provider)
    with pytest.raises(ResourceError, match="agent_start_timeout") as caught:
        provider.start(machine, ["true"], {})
    assert "SSM agent" in (caught.value.hint or "") and caught.value.resource_id == machine.cloud_id
    assert fault_proxy.count("SendCommand") == 0  # never sent to a machine SSM does not know
    assert boto("ssm", aws).list_commands()["Commands"] == []


def test_shell_script_refuses_bad_env_names_and_empty_argv():
    with pytest.raises(ValidationError, match="not valid shell names"):
        shell_script(["true"], {"A-B": "x"})
    with pytest.raises(ValidationError, match="no command"):
        shell_script([], {})
