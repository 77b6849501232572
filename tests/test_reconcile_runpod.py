"""`resources reconcile` / `cleanup` over RunPod, against the fake GraphQL server: pods are found
by their ``runctl-<resource id>`` name, drift is fixed both ways, and an intent row younger than
the grace period is reported but left alone (the same rule as RunPod's own per-row reconcile)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from runctl.core.config import RunpodConfig
from runctl.core.ledger import Ledger
from runctl.core.retry import RetryPolicy
from runctl.providers.base import INTENT_GRACE_S, MachineSpec
from runctl.providers.runpod.api import RunpodAPI, pod_name
from runctl.providers.runpod.graphql import GraphQLClient
from runctl.providers.runpod.provider import RunpodProvider
from runctl.workflows.reconcile import apply_reconcile, plan_cleanup, plan_reconcile, run_cleanup, settle
from tests.conftest import run_cli
from tests.support.fake_runpod import FakeRunpod

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, deadline=10, name="test")
A5000 = "NVIDIA RTX A5000"


@pytest.fixture
def ledger(isolated_env: Path) -> Ledger:
    return Ledger.open_default()


@pytest.fixture
def provider(ledger: Ledger, runpod_fake: FakeRunpod) -> RunpodProvider:
    client = GraphQLClient(runpod_fake.url, SecretStr(runpod_fake.api_key), retry=FAST)
    return RunpodProvider(
        ledger, RunpodConfig(api_url=runpod_fake.url), api=RunpodAPI(client), confirm_timeout=5, retry=FAST
    )


def reconcile(provider: RunpodProvider, *, apply: bool = True, **kw: float):  # type: ignore[no-untyped-def]
    providers = {"runpod": provider}
    actions = plan_reconcile(provider.ledger, providers, **kw)
    if apply:
        apply_reconcile(provider.lifecycle, providers, actions)
    return actions


def create(provider: RunpodProvider) -> tuple[str, str]:
    [machine] = provider.apply(provider.plan(MachineSpec(gpu_type="RTX A5000")))
    return machine.resource_id, machine.cloud_id


def test_intent_with_a_pod_is_recorded_with_the_pods_own_rate(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    intent = ledger.record_intent(provider="runpod", kind="pod", spec={"gpu_count": 1})
    pod = runpod_fake.deploy({"name": pod_name(intent.id, "crashed"), "gpuTypeId": A5000}, spot=False)

    [action] = reconcile(provider)
    assert (action.action, action.resource_id, action.cloud_id) == ("record_created", intent.id, pod.id)
    row = ledger.get_resource(intent.id)
    assert (row.state, row.cloud_id, row.rate_usd_per_hour) == ("running", pod.id, pytest.approx(0.27))
    assert ledger.usage(resource_id=row.id)[-1].ended_at is None  # its cost is now visible
    assert reconcile(provider) == []


def test_young_intent_without_a_pod_is_in_flight_and_left_alone(
    provider: RunpodProvider, ledger: Ledger
) -> None:
    intent = ledger.record_intent(provider="runpod", kind="pod")
    [action] = reconcile(provider)
    assert action.action == "in_flight" and action.to_state is None
    assert ledger.get_resource(intent.id).state == "intent"
    # the same row, seen after the grace period (or with no grace), never got a pod
    [late] = reconcile(provider, now=time.time() + INTENT_GRACE_S + 1)
    assert late.action == "never_created"
    assert ledger.get_resource(intent.id).state == "create_failed"
    assert reconcile(provider, intent_grace_s=0) == []


def test_reconcile_and_runpods_own_reconcile_share_the_grace(
    provider: RunpodProvider, ledger: Ledger
) -> None:
    young = ledger.record_intent(provider="runpod", kind="pod")
    assert settle(provider.lifecycle, provider, young).state == "intent"
    assert [a.action for a in reconcile(provider, apply=False)] == ["in_flight"]
    assert settle(provider.lifecycle, provider, young, intent_grace_s=0).state == "create_failed"


def test_pod_terminated_outside_runctl_is_marked_gone(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    resource_id, pod_id = create(provider)
    runpod_fake.pods[pod_id].status = "TERMINATED"

    [action] = reconcile(provider)
    assert (action.action, action.to_state) == ("gone", "terminated")
    assert ledger.get_resource(resource_id).state == "terminated"
    assert all(i.ended_at is not None for i in ledger.usage(resource_id=resource_id))


def test_ledger_saying_gone_while_the_pod_runs_is_corrected(provider: RunpodProvider, ledger: Ledger) -> None:
    resource_id, _ = create(provider)
    ledger.transition(resource_id, "terminated", billable=False, detail="a lie")

    [action] = reconcile(provider)
    assert (action.action, action.to_state) == ("update_state", "running")
    assert ledger.usage(resource_id=resource_id)[-1].ended_at is None


def test_untracked_runctl_pod_is_adopted_without_renaming_others_ignored(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    lost = runpod_fake.deploy({"name": "runctl-r-0badf00d-lost", "gpuTypeId": A5000}, spot=False)
    runpod_fake.deploy({"name": "not-runctls", "gpuTypeId": A5000}, spot=False)

    [action] = reconcile(provider)
    assert (action.action, action.cloud_id) == ("adopt", lost.id)
    [row] = ledger.list_resources()
    assert (row.cloud_id, row.state, row.rate_usd_per_hour) == (lost.id, "running", pytest.approx(0.27))
    assert row.spec["adopted"] is True and row.spec["tagged_resource"] == "r-0badf00d"
    assert runpod_fake.pods[lost.id].name == "runctl-r-0badf00d-lost"  # RunPod cannot rename
    notes = [e.message for e in ledger.events(limit=20) if e.kind == "resource.reconcile"]
    assert any("cannot rename" in n for n in notes)
    assert reconcile(provider) == []  # followed by its pod id from now on


def test_cleanup_releases_pods_but_not_a_young_intent(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    resource_id, _ = create(provider)
    young = ledger.record_intent(provider="runpod", kind="pod")

    items = plan_cleanup(ledger, {"runpod": provider})
    plan = {i.resource.id: i.action for i in items}
    assert plan == {resource_id: "release", young.id: "skip"}
    done = {i.resource.id: i.outcome for i in run_cleanup(provider.lifecycle, items)}
    assert done[resource_id] == "terminated"
    assert runpod_fake.live_pods() == []
    assert ledger.get_resource(young.id).state == "intent"


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_crash_after_the_create_call_then_reconcile(
    runpod_fake: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # AWS unconfigured: only RunPod is asked
    crashed = run_cli(
        "runpod", "create", "--gpu", "RTX A5000", env={"RUNCTL_CRASH_AT": "runpod.create.after_call"}
    )
    assert crashed.returncode == -signal.SIGKILL
    [pod] = runpod_fake.live_pods()

    shown = run_cli("resources", "reconcile", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    [action] = json.loads(shown.stdout)["actions"]
    assert (action["action"], action["provider"], action["cloud_id"]) == ("record_created", "runpod", pod.id)

    assert run_cli("resources", "reconcile", "--apply").returncode == 0
    [row] = Ledger.open_default().list_resources()
    assert (row.cloud_id, row.state) == (pod.id, "running")
    assert json.loads(run_cli("resources", "reconcile", "-o", "json").stdout)["actions"] == []

    done = run_cli("resources", "cleanup", "--yes", "--provider", "runpod", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert [i["outcome"] for i in json.loads(done.stdout)["items"]] == ["terminated"]
    assert runpod_fake.live_pods() == []


def test_cli_skips_runpod_without_a_key_unless_the_ledger_has_pods(
    runpod_fake: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "RUNPOD_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    skipped = run_cli("resources", "reconcile", "-o", "json")
    assert skipped.returncode == 0, skipped.stderr
    assert "runpod is not configured" in skipped.stderr and runpod_fake.requests == []

    Ledger.open_default().record_intent(provider="runpod", kind="pod")
    refused = run_cli("resources", "reconcile")  # a RunPod resource may be billing: never skip it
    assert refused.returncode == 77 and "RUNPOD_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_cli_intent_grace_option(runpod_fake: FakeRunpod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    intent = Ledger.open_default().record_intent(provider="runpod", kind="pod")
    waiting = json.loads(run_cli("resources", "reconcile", "--apply", "-o", "json").stdout)
    assert [a["action"] for a in waiting["actions"]] == ["in_flight"]
    assert Ledger.open_default().get_resource(intent.id).state == "intent"

    settled = run_cli("resources", "reconcile", "--apply", "--intent-grace", "0", "-o", "json")
    assert [a["action"] for a in json.loads(settled.stdout)["actions"]] == ["never_created"]
    assert Ledger.open_default().get_resource(intent.id).state == "create_failed"

    bad = run_cli("resources", "reconcile", "--intent-grace", "soon")
    assert bad.returncode == 64 and "--intent-grace" in bad.stderr


# -- other processes at work while reconcile runs ---------------------------------------------


def test_a_stale_plan_never_overrides_a_newer_state(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    resource_id, pod_id = create(provider)
    runpod_fake.pods[pod_id].status = "EXITED"
    [action] = reconcile(provider, apply=False)
    assert (action.action, action.to_state) == ("update_state", "exited")
    # meanwhile another runctl process terminates the pod and records it
    runpod_fake.pods[pod_id].status = "TERMINATED"
    ledger.transition(resource_id, "terminated", billable=False, detail="terminated by another process")

    apply_reconcile(provider.lifecycle, {"runpod": provider}, [action])
    assert ledger.get_resource(resource_id).state == "terminated"  # not brought back to life


def test_a_create_in_flight_is_not_adopted_as_a_stray(
    provider: RunpodProvider, runpod_fake: FakeRunpod, ledger: Ledger
) -> None:
    class Racing:
        """Another process writes its intent and creates its pod while reconcile is running:
        after reconcile read the ledger, before it lists the pods."""

        name = "runpod"

        def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
            return getattr(provider, attr)

        def list_managed(self):  # type: ignore[no-untyped-def]
            intent = ledger.record_intent(provider="runpod", kind="pod")
            runpod_fake.deploy({"name": pod_name(intent.id), "gpuTypeId": A5000}, spot=False)
            return provider.list_managed()

    assert plan_reconcile(ledger, {"runpod": Racing()}) == []  # type: ignore[dict-item]
    [row] = ledger.list_resources()
    assert row.state == "intent"  # its own process records the pod; the next reconcile would too
    [action] = reconcile(provider)
    assert action.action == "record_created"
