"""Crash at every step: runctl is killed with SIGKILL at each crash point of ``aws create``,
``aws ebs create``, ``aws ebs snapshot``, ``runpod create`` and ``workflow train``; then
``resources reconcile --apply`` must leave nothing alive in the cloud that the ledger does not
account for, and a second reconcile must find nothing left to do."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runctl.core.ledger import Ledger
from runctl.core.testhooks import CRASH_ENV, CRASH_POINTS
from tests.chaos.checks import aws_leaks, no_traceback, runpod_leaks
from tests.conftest import REPO, CliResult, run_cli
from tests.support.aws import make_provider
from tests.support.fake_runpod import FakeRunpod
from tests.support.machine_sim import MachineSimulator
from tests.support.remote import TRAIN

RECONCILE = ("resources", "reconcile", "--intent-grace", "0", "-o", "json")


def crash(*args: str, point: str, cwd: Path | None = None) -> CliResult:
    result = run_cli(*args, cwd=cwd, env={CRASH_ENV: point}, timeout=120)
    assert result.returncode == -signal.SIGKILL, f"{point} was not reached: {result.stderr[-2000:]}"
    return result


def reconcile_twice(leaks: Any, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Reconcile with --apply (the crashed process is dead: no grace needed), check, again."""
    figures["unaccounted_after_crash"] = len(leaks())
    started = time.monotonic()
    fixed = no_traceback(run_cli(*RECONCILE, "--apply"))
    figures["reconcile_s"] = round(time.monotonic() - started, 2)
    assert fixed.returncode == 0, fixed.stderr
    actions = json.loads(fixed.stdout)["actions"]
    figures["reconcile_actions"] = sorted(a["action"] for a in actions)
    assert leaks() == set()
    figures["unaccounted_after_reconcile"] = 0
    again = run_cli(*RECONCILE)
    assert again.returncode == 0 and json.loads(again.stdout)["actions"] == [], again.stdout
    return actions  # type: ignore[no-any-return]


def test_every_crash_point_in_the_source_is_listed() -> None:
    called = set()
    for path in (REPO / "src").rglob("*.py"):
        called |= set(re.findall(r'crash_point\("([^"]+)"\)', path.read_text()))
    listed = {point for points in CRASH_POINTS.values() for point in points}
    assert called == listed


# -- AWS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", CRASH_POINTS["aws create"])
def test_aws_create(aws: str, point: str, figures: dict[str, Any]) -> None:
    args = ["aws", "create", "t3.micro"]
    if point == "aws.create.volume_attached":
        _, volume = make_provider().volumes.create(size_gb=5, zone="us-east-1a")
        args += ["--data-volume", volume.id]
    crash(*args, point=point)
    if point == "aws.create.after_call":  # the worst moment: billing, and only an intent row
        assert len(aws_leaks(aws)) == 2  # the instance and its root volume
    reconcile_twice(lambda: aws_leaks(aws), figures)
    [row] = [r for r in Ledger.open_default().list_resources() if r.kind == "instance"]
    assert row.state == ("create_failed" if point == "aws.create.intent_written" else "running")


@pytest.mark.parametrize("point", CRASH_POINTS["aws ebs create"])
def test_aws_ebs_create(aws: str, point: str, figures: dict[str, Any]) -> None:
    crash("aws", "ebs", "create", "--size", "5", point=point)
    reconcile_twice(lambda: aws_leaks(aws), figures)
    [row] = Ledger.open_default().list_resources()
    assert row.state == ("create_failed" if point.endswith("intent_written") else "available")


@pytest.mark.parametrize("point", CRASH_POINTS["aws ebs snapshot"])
def test_aws_ebs_snapshot(aws: str, point: str, figures: dict[str, Any]) -> None:
    _, volume = make_provider().volumes.create(size_gb=5, zone="us-east-1a")
    crash("aws", "ebs", "snapshot", volume.id, point=point)
    reconcile_twice(lambda: aws_leaks(aws), figures)
    [row] = [r for r in Ledger.open_default().list_resources() if r.kind == "snapshot"]
    assert row.state != "intent"


# -- RunPod -----------------------------------------------------------------------------------


@pytest.mark.parametrize("point", CRASH_POINTS["runpod create"])
def test_runpod_create(
    runpod_fake: FakeRunpod, point: str, figures: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # only RunPod is reconciled
    crash("runpod", "create", "--gpu", "RTX A5000", point=point)
    reconcile_twice(lambda: runpod_leaks(runpod_fake), figures)
    [row] = Ledger.open_default().list_resources()
    assert row.state == ("create_failed" if point.endswith("intent_written") else "running")


# -- workflow train (EC2, with the machine simulator) ------------------------------------------


@pytest.fixture
def cloud(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MachineSimulator]:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs")
    monkeypatch.setenv("RUNCTL_STORAGE__URI", "s3://runs/runctl")
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws)
    yield sim
    sim.close()


@pytest.mark.parametrize("point", CRASH_POINTS["workflow train"])
def test_workflow_train(
    cloud: MachineSimulator, aws: str, tmp_path: Path, point: str, figures: dict[str, Any]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    crash(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--poll-interval", "0.3s", "--", "40", "0.02",
        point=point, cwd=project,
    )  # fmt: skip
    [job] = Ledger.open_default().list_jobs()  # nothing lost: the job is on record at every step
    figures["job_state_after_crash"] = job.state
    if point == "workflow.agent_started":
        # The agent outlives its controller (and ends its own machine when done, which the
        # ledger learns later): reattaching follows the job to its end and releases the machine.
        waited = run_cli("jobs", "wait", job.id, "--poll-interval", "0.3s", "-o", "json", timeout=120)
        assert waited.returncode == 0, waited.stderr + str(cloud.errors)
        assert json.loads(waited.stdout)["job"]["state"] == "succeeded"
    reconcile_twice(lambda: aws_leaks(aws), figures)
    cleaned = run_cli("resources", "cleanup", "--yes", "--intent-grace", "0")
    assert cleaned.returncode == 0, cleaned.stderr
    assert aws_leaks(aws) == set() and not [
        r for r in Ledger.open_default().list_resources(include_gone=False) if r.kind == "instance"
    ]
