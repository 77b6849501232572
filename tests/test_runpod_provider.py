"""The RunPod provider in-process, against the fake GraphQL server on loopback (real HTTP)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from runctl.core.config import RunpodConfig
from runctl.core.errors import (
    AuthError,
    CapacityError,
    ConfigError,
    NotFoundError,
    QuotaError,
    ResourceError,
    RetryExhaustedError,
    ThrottledError,
    ValidationError,
)
from runctl.core.ledger import Ledger
from runctl.core.retry import RetryPolicy
from runctl.providers.base import MachineSpec
from runctl.providers.runpod.api import RunpodAPI, pod_name, resource_id_from_pod_name
from runctl.providers.runpod.graphql import AmbiguousRequestError, GraphQLClient, classify_response
from runctl.providers.runpod.provider import RunpodProvider, pod_start_command
from runctl.workflows.reconcile import settle
from tests.support.fake_runpod import CAPACITY_MESSAGE, FakeRunpod, RecordedRequest

FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, deadline=10, name="test")
RTX4090 = "NVIDIA GeForce RTX 4090"
A5000 = "NVIDIA RTX A5000"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


def make_provider(
    ledger: Ledger,
    fake: FakeRunpod,
    *,
    key: str | None = None,
    retry: RetryPolicy = FAST,
    confirm: float = 10,
) -> RunpodProvider:
    from pydantic import SecretStr

    client = GraphQLClient(fake.url, SecretStr(key or fake.api_key), retry=retry)
    return RunpodProvider(
        ledger, RunpodConfig(api_url=fake.url), api=RunpodAPI(client), confirm_timeout=confirm
    )


@pytest.fixture
def provider(ledger: Ledger, runpod_fake: FakeRunpod) -> RunpodProvider:
    return make_provider(ledger, runpod_fake)


def mutations(fake: FakeRunpod) -> list[RecordedRequest]:
    return [r for r in fake.requests if (r.body or {}).get("query", "").lstrip().startswith("mutation")]


def test_create_stop_resume_terminate_keeps_ledger_and_cost_true(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    plan = provider.plan(MachineSpec(gpu_type="RTX A5000", gpu_count=2, extra={"cloud": "secure"}))
    assert plan.rate_usd_per_hour == pytest.approx(0.54)
    assert mutations(runpod_fake) == []  # planning sends no mutation

    [machine] = provider.apply(plan)
    pod = runpod_fake.pods[machine.cloud_id]
    resource = ledger.get_resource(machine.resource_id)
    assert pod.name == f"runctl-{resource.id}" and pod.gpu_count == 2 and pod.cloud == "SECURE"
    assert (resource.state, resource.rate_usd_per_hour) == ("running", pod.cost_per_hr)

    resource = provider.stop(resource)
    assert resource.state == "exited" and runpod_fake.pods[pod.id].status == "EXITED"
    resource = provider.resume(resource)
    assert resource.state == "running" and runpod_fake.count("podResume") == 1

    runpod_fake.terminate_lag = 2  # RunPod still lists it for two polls: release must wait
    final = provider.lifecycle.release(resource)
    assert final.state == "terminated"
    assert runpod_fake.live_pods() == []
    assert runpod_fake.count("pod") >= 3  # polled until gone
    intervals = ledger.usage(resource_id=resource.id)
    assert len(intervals) == 2 and all(i.ended_at is not None for i in intervals)
    assert [i.rate_usd_per_hour for i in intervals] == [pytest.approx(0.54)] * 2

    requests_before = len(runpod_fake.requests)
    assert provider.release(final) == "terminated"  # idempotent: nothing left to terminate
    assert runpod_fake.count("podTerminate") == 1
    assert len(runpod_fake.requests) == requests_before + 1  # one lookup, no mutation


def test_capacity_error_on_first_gpu_type_falls_over_to_the_next(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    runpod_fake.no_capacity.add((RTX4090, None))
    plan = provider.plan(MachineSpec(extra={"gpu_types": ["RTX 4090", A5000], "cloud": "secure"}))
    assert [o["gpu_type_id"] for o in plan.request["offers"]] == [RTX4090, A5000]

    [machine] = provider.apply(plan)
    assert runpod_fake.pods[machine.cloud_id].gpu_type["id"] == A5000
    assert runpod_fake.count("podFindAndDeployOnDemand") == 2  # capacity: no retry of the same offer
    resource = ledger.get_resource(machine.resource_id)
    assert resource.rate_usd_per_hour == pytest.approx(0.27)
    kinds = [e.kind for e in ledger.events(limit=50) if e.resource_id == resource.id]
    assert "runpod.no_capacity" in kinds


def test_cloud_all_tries_secure_then_community(provider: RunpodProvider, runpod_fake: FakeRunpod) -> None:
    runpod_fake.no_capacity.add((RTX4090, "SECURE"))
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type=RTX4090, extra={"cloud": "all"})))
    assert runpod_fake.pods[machine.cloud_id].cloud == "COMMUNITY"


def test_no_capacity_anywhere_marks_the_intent_failed_and_says_what_was_tried(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    runpod_fake.no_capacity |= {(RTX4090, None), (A5000, None)}
    plan = provider.plan(MachineSpec(extra={"gpu_types": [RTX4090, A5000], "cloud": "community"}))
    with pytest.raises(CapacityError) as info:
        provider.apply(plan)
    assert RTX4090 in str(info.value) and A5000 in str(info.value)
    assert "--gpu" in (info.value.hint or "")
    [row] = ledger.list_resources()
    assert row.state == "create_failed" and runpod_fake.live_pods() == []


def test_429_is_retried_a_bounded_number_of_times(provider: RunpodProvider, runpod_fake: FakeRunpod) -> None:
    runpod_fake.fail_next(2, 429)
    assert len(provider.gpu_types()) == 3
    assert runpod_fake.count("gpuTypes") == 3

    runpod_fake.fail_next(100, 429)
    with pytest.raises(RetryExhaustedError) as info:
        provider.gpu_types()
    assert info.value.attempts == FAST.max_attempts
    assert isinstance(info.value.last_error, ThrottledError)
    assert runpod_fake.count("gpuTypes") == 3 + FAST.max_attempts


def test_5xx_is_retried_for_reads(provider: RunpodProvider, runpod_fake: FakeRunpod) -> None:
    runpod_fake.fail_next(1, 502)
    runpod_fake.fail_next(1, 500)
    assert provider.api.list_pods() == []
    assert runpod_fake.count("myself") == 3


def test_401_is_an_auth_error_sent_once(ledger: Ledger, runpod_fake: FakeRunpod) -> None:
    provider = make_provider(ledger, runpod_fake, key="rp-wrong-key-9999")
    with pytest.raises(AuthError) as info:
        provider.gpu_types()
    assert info.value.exit_code == 77 and "RUNPOD_API_KEY" in (info.value.hint or "")
    assert len(runpod_fake.requests) == 1


def test_missing_key_fails_before_any_request(
    ledger: Ledger, runpod_fake: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY")
    provider = RunpodProvider(ledger, RunpodConfig(api_url=runpod_fake.url))
    assert not provider.has_credentials
    with pytest.raises(AuthError):
        provider.api.list_pods()
    assert runpod_fake.requests == []


def test_key_from_config_is_used_when_the_environment_has_none(
    ledger: Ledger, runpod_fake: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    monkeypatch.delenv("RUNPOD_API_KEY")
    config = RunpodConfig(api_url=runpod_fake.url, api_key=SecretStr(runpod_fake.api_key))
    assert RunpodProvider(ledger, config).api.list_pods() == []
    assert runpod_fake.requests[0].headers["Authorization"] == f"Bearer {runpod_fake.api_key}"


def test_the_key_never_shows_in_errors_or_reprs(ledger: Ledger, runpod_fake: FakeRunpod) -> None:
    key = "rp-wrong-key-echoed-4242"
    runpod_fake.echo_key_in_errors = True  # a server that repeats the key in its error text
    provider = make_provider(ledger, runpod_fake, key=key)
    with pytest.raises(AuthError) as info:
        provider.api.list_pods()
    assert key not in str(info.value) and "***" in str(info.value)
    assert key not in repr(provider.api.client) and key not in repr(info.value.to_dict())
    assert key not in runpod_fake.requests[0].path  # never in the URL


def test_intent_row_exists_before_the_create_request_arrives(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    seen: list[tuple[str, str]] = []

    def check(request: RecordedRequest) -> None:
        if "podFindAndDeployOnDemand" in request.fields:
            resource_id = resource_id_from_pod_name(request.variables["input"]["name"])
            with Ledger(ledger.path) as other:  # another connection: the row is committed
                seen.append((resource_id, other.get_resource(resource_id).state))

    runpod_fake.on_request = check
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type=A5000)))
    assert runpod_fake.hook_errors == []
    assert seen == [(machine.resource_id, "intent")]


def test_lost_create_answer_adopts_the_pod_instead_of_creating_another(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    runpod_fake.fail_after_create = 502  # RunPod created it, the answer was lost
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type=A5000)))
    assert len(runpod_fake.live_pods()) == 1 and runpod_fake.count("podFindAndDeployOnDemand") == 1
    assert ledger.get_resource(machine.resource_id).cloud_id == runpod_fake.live_pods()[0].id


def test_create_that_failed_before_reaching_runpod_is_sent_again(
    provider: RunpodProvider, runpod_fake: FakeRunpod
) -> None:
    runpod_fake.fail_next(1, 503, field="podFindAndDeployOnDemand")
    provider.apply(provider.plan(MachineSpec(gpu_type=A5000)))
    assert len(runpod_fake.live_pods()) == 1 and runpod_fake.count("podFindAndDeployOnDemand") == 2
    assert runpod_fake.count("myself") == 1  # looked for the pod by name before re-sending


def test_mutation_is_not_resent_blindly_by_the_client(runpod_fake: FakeRunpod) -> None:
    from pydantic import SecretStr

    from runctl.providers.runpod.api import DEPLOY_ON_DEMAND

    runpod_fake.fail_next(1, 503)
    client = GraphQLClient(runpod_fake.url, SecretStr(runpod_fake.api_key), retry=FAST)
    with pytest.raises(AmbiguousRequestError):
        client.execute(
            DEPLOY_ON_DEMAND,
            {"input": {"name": "x", "gpuTypeId": A5000}},
            operation="RunctlDeployOnDemand",
            idempotent=False,
        )
    assert len(runpod_fake.requests) == 1


def test_spot_pod_uses_bids_for_create_and_resume(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    with pytest.raises(ValidationError, match="under the current spot price"):
        provider.plan(MachineSpec(gpu_type=RTX4090, spot=True, extra={"cloud": "secure", "bid": 0.1}))
    plan = provider.plan(MachineSpec(gpu_type=RTX4090, spot=True, extra={"cloud": "secure", "bid": 0.4}))
    [machine] = provider.apply(plan)
    [create] = [r for r in runpod_fake.requests if "podRentInterruptable" in r.fields]
    assert create.variables["input"]["bidPerGpu"] == 0.4
    resource = provider.stop(ledger.get_resource(machine.resource_id))
    resource = provider.resume(resource)
    [resume] = [r for r in runpod_fake.requests if "podBidResume" in r.fields]
    assert resume.variables["bidPerGpu"] == 0.4 and resource.state == "running"
    assert runpod_fake.count("podResume") == 0


def test_graphql_errors_in_a_200_answer_are_classified(
    provider: RunpodProvider, runpod_fake: FakeRunpod
) -> None:
    pod = runpod_fake.deploy({"name": "spot", "gpuTypeId": A5000, "bidPerGpu": 0.2}, spot=True)
    with pytest.raises(ValidationError, match="podBidResume"):
        provider.api.resume_pod(pod.id, gpu_count=1)  # RunPod: HTTP 200, errors[], data null
    with pytest.raises(NotFoundError):
        provider.api.stop_pod("doesnotexist01")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"errors": [{"message": CAPACITY_MESSAGE}], "data": {"x": None}}, CapacityError),
        (200, {"errors": [{"message": "x", "extensions": {"code": "UNAUTHENTICATED"}}]}, AuthError),
        (401, b"Unauthorized", AuthError),
        (429, b"", ThrottledError),
        (503, b"<html>bad gateway</html>", ThrottledError),
        (
            400,
            {
                "errors": [
                    {"message": "Cannot query field", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                ]
            },
            ValidationError,
        ),
        (200, {"errors": [{"message": "Your balance is too low to deploy this pod"}]}, QuotaError),
        (200, b"not json at all", ThrottledError),
    ],
)
def test_classify_response(status: int, body: object, error: type[Exception]) -> None:
    import json

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(error):
        classify_response(status, content, operation="Op")


def test_5xx_on_a_mutation_is_ambiguous_not_retryable() -> None:
    with pytest.raises(AmbiguousRequestError) as info:
        classify_response(502, b"", operation="Op", idempotent=False)
    assert not info.value.retryable


def test_release_that_runpod_never_confirms_raises_and_keeps_the_row_live(
    ledger: Ledger, runpod_fake: FakeRunpod
) -> None:
    provider = make_provider(ledger, runpod_fake, confirm=0.5)
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type=A5000)))
    runpod_fake.terminate_lag = 10**9
    with pytest.raises(ResourceError, match="still reports it RUNNING"):
        provider.lifecycle.release(ledger.get_resource(machine.resource_id))
    assert ledger.get_resource(machine.resource_id).state == "running"


def test_intent_row_is_found_by_name_and_reconciled(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    intent = ledger.record_intent(provider="runpod", kind="pod", spec={"gpu_count": 1})
    # the create reached RunPod, then runctl died before writing the pod id down
    runpod_fake.deploy({"name": pod_name(intent.id, "crashed"), "gpuTypeId": A5000}, spot=False)
    runpod_fake.deploy({"name": "someone-elses-pod", "gpuTypeId": A5000}, spot=False)
    assert provider.lookup(intent) == "running"
    assert [p.resource_id for p in provider.managed_pods()] == [intent.id]
    adopted = settle(provider.lifecycle, provider, intent)
    assert adopted.state == "running" and adopted.cloud_id is not None
    assert adopted.rate_usd_per_hour == pytest.approx(0.27)

    orphan = ledger.record_intent(provider="runpod", kind="pod")
    assert settle(provider.lifecycle, provider, orphan).state == "intent"  # a create may still be in flight
    assert settle(provider.lifecycle, provider, orphan, intent_grace_s=0).state == "create_failed"


def test_plan_errors_name_the_fix(provider: RunpodProvider) -> None:
    with pytest.raises(ValidationError, match="did you mean 'RTX A5000'"):
        provider.plan(MachineSpec(gpu_type="RTX A500"))
    with pytest.raises(ValidationError, match="no on-demand offer in the community cloud"):
        provider.plan(MachineSpec(gpu_type="H100 SXM", extra={"cloud": "community"}))


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="unencrypted"):
        GraphQLClient("http://api.example.com", None)
    assert GraphQLClient("https://api.runpod.io/", None).endpoint == "https://api.runpod.io/graphql"


def test_pod_start_command_round_trips_through_a_shell_split() -> None:
    argv = ["python", "train.py", "--name", 'it\'s a "test"', "$HOME", "a;b"]
    docker_args, env = pod_start_command(argv, {"RUNCTL_JOB_ID": "j-1", "SECRET": "s3cr3t"})
    program, flag, script = shlex.split(docker_args)
    assert (program, flag) == ("bash", "-c") and shlex.split(script) == argv
    assert env == [{"key": "RUNCTL_JOB_ID", "value": "j-1"}, {"key": "SECRET", "value": "s3cr3t"}]
    with pytest.raises(ValidationError):
        pod_start_command(argv, {"1BAD": "x"})


def test_command_and_env_reach_runpod_but_not_the_plan_or_ledger(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    spec = MachineSpec(gpu_type=A5000, extra={"command": ["python", "t.py"], "env": {"TOKEN": "s3cr3t-v"}})
    plan = provider.plan(spec)
    assert "s3cr3t-v" not in repr(plan.request)
    [machine] = provider.apply(plan)
    pod = runpod_fake.pods[machine.cloud_id]
    assert pod.env == [{"key": "TOKEN", "value": "s3cr3t-v"}]
    assert shlex.split(pod.docker_args or "")[:2] == ["bash", "-c"]
    resource = ledger.get_resource(machine.resource_id)
    assert "s3cr3t-v" not in repr(resource) and "s3cr3t-v" not in repr(ledger.events(limit=100))
    assert all(
        "env" not in (r.body or {}).get("query", "") for r in runpod_fake.requests if "myself" in r.fields
    )


def test_every_request_uses_variables_only(provider: RunpodProvider, runpod_fake: FakeRunpod) -> None:
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type=A5000, spot=True)))
    provider.lifecycle.release(provider.ledger.get_resource(machine.resource_id))
    assert runpod_fake.requests and all(r.literals == [] for r in runpod_fake.requests)
    assert all(r.status == 200 for r in runpod_fake.requests)
