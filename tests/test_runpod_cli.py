"""``runctl runpod …`` as a real process against the fake RunPod GraphQL server."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from runctl.core.ledger import Ledger
from runctl.providers.runpod.api import resource_id_from_pod_name
from tests.conftest import CliResult, run_cli
from tests.support.fake_runpod import FakeRunpod, RecordedRequest

A5000 = "NVIDIA RTX A5000"
RTX4090 = "NVIDIA GeForce RTX 4090"


def ledger_at(state_dir: Path) -> Ledger:
    return Ledger(state_dir / "ledger.db")


def ok(result: CliResult) -> CliResult:
    assert result.returncode == 0, result.stderr
    return result


def test_gpus_lists_prices(runpod_fake: FakeRunpod) -> None:
    rows = json.loads(ok(run_cli("runpod", "gpus", "--output", "json")).stdout)
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {g["id"] for g in runpod_fake.gpu_types}
    assert by_id[RTX4090]["secure_price"] == 0.69 and by_id[RTX4090]["community_spot_price"] == 0.2
    assert rows[0]["lowest_price"] <= rows[-1]["lowest_price"]  # cheapest first
    assert "RTX 4090" in ok(run_cli("runpod", "gpus")).stdout


def test_create_status_stop_resume_terminate(runpod_fake: FakeRunpod, isolated_env: Path) -> None:
    pod_id = ok(
        run_cli("runpod", "create", "--gpu", "RTX A5000", "--volume", "10", "-o", "id")
    ).stdout.strip()
    pod = runpod_fake.pods[pod_id]
    assert pod.volume_gb == 10 and pod.status == "RUNNING"

    status = json.loads(ok(run_cli("runpod", "status", pod_id, "-o", "json")).stdout)
    assert status["managed"] and status["ledger_state"] == "running"
    resource_id = status["resource_id"]
    assert pod.name == f"runctl-{resource_id}"

    stopped = ok(run_cli("runpod", "stop", resource_id))  # a resource id works as well as a pod id
    assert runpod_fake.pods[pod_id].status == "EXITED" and "10 GB volume" in stopped.stderr
    ok(run_cli("runpod", "resume", pod_id))
    assert runpod_fake.pods[pod_id].status == "RUNNING"

    listed = json.loads(ok(run_cli("runpod", "list", "-o", "json")).stdout)
    assert [(r["id"], r["resource_id"]) for r in listed] == [(pod_id, resource_id)]

    done = json.loads(ok(run_cli("runpod", "terminate", pod_id, "-o", "json")).stdout)
    assert done["ledger_state"] == "terminated"
    assert runpod_fake.live_pods() == []
    with ledger_at(isolated_env) as ledger:
        resource = ledger.get_resource(resource_id)
        assert resource.state == "terminated"
        assert [i.ended_at is not None for i in ledger.usage(resource_id=resource_id)] == [True, True]


def test_capacity_error_then_next_gpu_type(runpod_fake: FakeRunpod) -> None:
    runpod_fake.no_capacity.add((RTX4090, None))
    result = ok(run_cli("runpod", "create", "--gpu", "RTX 4090", "--gpu", "RTX A5000", "-o", "json"))
    created = json.loads(result.stdout)
    assert runpod_fake.pods[created["id"]].gpu_type["id"] == A5000
    assert runpod_fake.count("podFindAndDeployOnDemand") == 2


def test_no_capacity_anywhere_is_exit_69_and_creates_nothing(runpod_fake: FakeRunpod) -> None:
    runpod_fake.no_capacity.add((A5000, None))
    result = run_cli("runpod", "create", "--gpu", "RTX A5000", "--cloud", "all")
    assert result.returncode == 69
    assert "no capacity" in result.stderr and "hint:" in result.stderr
    assert runpod_fake.live_pods() == []


def test_intent_row_exists_before_the_create_reaches_runpod(
    runpod_fake: FakeRunpod, isolated_env: Path
) -> None:
    seen: list[str] = []

    def check(request: RecordedRequest) -> None:
        if "podRentInterruptable" in request.fields:
            resource_id = resource_id_from_pod_name(request.variables["input"]["name"])
            with ledger_at(isolated_env) as ledger:
                seen.append(ledger.get_resource(resource_id).state)

    runpod_fake.on_request = check
    ok(run_cli("runpod", "create", "--gpu", "RTX 4090", "--spot", "--bid", "0.5", "--cloud", "community"))
    assert runpod_fake.hook_errors == [] and seen == ["intent"]


def test_crash_after_the_create_call_is_recovered_by_name(
    runpod_fake: FakeRunpod, isolated_env: Path
) -> None:
    crashed = run_cli(
        "runpod", "create", "--gpu", "RTX A5000", env={"RUNCTL_CRASH_AT": "runpod.create.after_call"}
    )
    assert crashed.returncode == -signal.SIGKILL
    [pod] = runpod_fake.live_pods()
    with ledger_at(isolated_env) as ledger:
        [row] = ledger.list_resources()
    assert row.state == "intent" and row.cloud_id is None and pod.name == f"runctl-{row.id}"

    status = json.loads(ok(run_cli("runpod", "status", row.id, "-o", "json")).stdout)
    assert status["id"] == pod.id and status["ledger_state"] == "running"  # adopted by its name
    ok(run_cli("runpod", "terminate", row.id))
    assert runpod_fake.live_pods() == []


def test_terminate_refuses_a_pod_not_in_the_ledger_without_force(runpod_fake: FakeRunpod) -> None:
    other = runpod_fake.deploy({"name": "not-runctls", "gpuTypeId": A5000}, spot=False)
    refused = run_cli("runpod", "terminate", other.id)
    assert refused.returncode == 66 and "--force" in refused.stderr
    assert runpod_fake.count("podTerminate") == 0 and runpod_fake.live_pods() == [other]

    missing = run_cli("runpod", "terminate", "nosuchpod00000", "--force")
    assert missing.returncode == 66 and runpod_fake.count("podTerminate") == 0

    ok(run_cli("runpod", "terminate", other.id, "--force"))
    assert runpod_fake.live_pods() == []


def test_401_is_exit_77_with_exactly_one_request(runpod_fake: FakeRunpod) -> None:
    result = run_cli("runpod", "list", env={"RUNPOD_API_KEY": "rp-wrong-key-1234"})
    assert result.returncode == 77
    assert "refused the API key" in result.stderr and "RUNPOD_API_KEY" in result.stderr
    assert len(runpod_fake.requests) == 1


def test_429_is_retried_by_the_cli(runpod_fake: FakeRunpod) -> None:
    runpod_fake.fail_next(1, 429)
    ok(run_cli("runpod", "list"))
    assert runpod_fake.count("myself") == 2


@pytest.mark.parametrize(
    "args",
    [
        ("runpod", "gpus"),
        ("runpod", "create", "--gpu", "RTX A5000", "-o", "json"),
        ("runpod", "create", "--gpu", "no such gpu"),
        ("runpod", "create", "--gpu", "RTX A5000", "--dry-run", "-o", "json"),
        ("runpod", "status", "nosuchpod00000"),
        ("runpod", "list", "-o", "json"),
        ("config", "show"),
    ],
)
def test_the_api_key_never_appears_in_output(runpod_fake: FakeRunpod, args: tuple[str, ...]) -> None:
    result = run_cli("--debug", "-vv", *args)
    assert runpod_fake.api_key not in result.stdout + result.stderr
    assert "Authorization" not in result.stdout + result.stderr


def test_the_api_key_never_appears_in_error_tracebacks(runpod_fake: FakeRunpod) -> None:
    key = "rp-wrong-secret-5678"
    runpod_fake.echo_key_in_errors = True  # the server repeats the key it was given
    for args in (("--debug", "runpod", "list"), ("--debug", "-vv", "--log-format", "json", "runpod", "gpus")):
        result = run_cli(*args, env={"RUNPOD_API_KEY": key})
        assert result.returncode == 77
        assert "Traceback" in result.stderr or "traceback" in result.stderr  # --debug really did show it
        assert key not in result.stdout + result.stderr

    runpod_fake.fail_next(
        1, 400, body=json.dumps({"errors": [{"message": f"bad {runpod_fake.api_key}"}]}).encode()
    )
    result = run_cli("--debug", "runpod", "list")
    assert result.returncode == 65 and runpod_fake.api_key not in result.stdout + result.stderr


def test_plain_http_to_a_remote_api_url_is_a_config_error(runpod_fake: FakeRunpod) -> None:
    result = run_cli("runpod", "list", env={"RUNCTL_RUNPOD__API_URL": "http://api.example.com"})
    assert result.returncode == 78 and "runpod.api_url" in result.stderr
    assert runpod_fake.requests == []
