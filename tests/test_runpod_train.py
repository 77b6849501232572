"""Remote training on RunPod end to end: the controller against the fake GraphQL server, the pod
simulator running each pod's start command for real, storage on the moto S3 server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.fake_runpod import FakeRunpod
from tests.support.pod_sim import PodSimulator
from tests.support.remote import controller, job_bucket, wait_for_checkpoint_in_storage


@pytest.fixture
def pods(
    aws: str, runpod_fake: FakeRunpod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PodSimulator]:
    job_bucket(monkeypatch)
    sim = PodSimulator(runpod_fake, tmp_path / "pods")
    yield sim
    sim.close()


def test_train_on_a_pod_succeeds_and_the_pod_is_gone(
    pods: PodSimulator, runpod_fake: FakeRunpod, project: Path
) -> None:
    result = run_cli(
        "workflow",
        "train",
        "train.py",
        "--provider",
        "runpod",
        "--max-duration",  # pods get STS credentials that last it (plus a margin)
        "1h",
        "--project-dir",
        str(project),
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        "--",
        "30",
        "0.01",
        "a b",
        cwd=project,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr + str(pods.errors)
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded" and job["provider"] == "runpod"
    assert runpod_fake.live_pods() == []  # terminated and confirmed gone
    assert "argv: ['a b']" in run_cli("logs", job["id"]).stdout
    for pod in runpod_fake.pods.values():  # the key never reached the pod; storage creds did
        env = {e["key"]: e["value"] for e in pod.env}
        assert "RUNPOD_API_KEY" not in env and "AWS_SECRET_ACCESS_KEY" in env
        # short-lived STS credentials for this job, not the controller's own keys
        assert env["AWS_ACCESS_KEY_ID"] != "testing" and env.get("AWS_SESSION_TOKEN")


def test_a_pod_that_exits_mid_run_is_preempted_and_resumed(
    pods: PodSimulator, runpod_fake: FakeRunpod, project: Path
) -> None:
    proc = controller(
        "runpod",
        "train",
        "new",
        "train.py",
        "--max-duration",
        "1h",
        "--project-dir",
        str(project),
        "--wait",
        "--auto-resume",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        "--",
        "300",  # 15 s: the pod exits mid-run
        "0.05",
        cwd=project,
    )
    try:
        deadline = time.monotonic() + 60
        while not pods.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pods.running(), pods.errors
        wait_for_checkpoint_in_storage()
        first = runpod_fake.pods[pods.running()[0]]
        first.status, first.started_at = "EXITED", None  # the host reclaimed it, no notice
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr + str(pods.errors)
    job = json.loads(stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    log = run_cli("logs", job["id"]).stdout
    resumed = int(log.split("resumed from step ")[1].split()[0])
    assert resumed >= 10 and resumed % 10 == 0  # from the last periodic checkpoint in storage
    assert runpod_fake.live_pods() == []


def test_existing_pods_cannot_be_given_a_command(runpod_fake: FakeRunpod, project: Path) -> None:
    result = run_cli("runpod", "train", "pod-123", "train.py", cwd=project)
    assert result.returncode == 64 and "new" in result.stderr


def test_a_pod_job_that_could_outlive_its_credentials_is_refused_before_anything(
    pods: PodSimulator, runpod_fake: FakeRunpod, project: Path
) -> None:
    """No --max-duration: STS credentials could expire under the job; refused (exit 78) before a
    job row or a pod exists, unless [runpod] long_lived_credentials allows the controller's keys."""
    refused = run_cli("runpod", "train", "new", "train.py", "--project-dir", str(project), cwd=project)
    assert refused.returncode == 78 and "long_lived_credentials" in refused.stderr, refused.stderr
    assert runpod_fake.count("podFindAndDeployOnDemand") == 0
    assert json.loads(run_cli("jobs", "list", "-o", "json").stdout) == []
    allowed = run_cli(
        "runpod", "train", "new", "train.py", "--project-dir", str(project), "--wait",
        "--poll-interval", "0.3s", "--", "5", "0.01",
        env={"RUNCTL_RUNPOD__LONG_LIVED_CREDENTIALS": "true"}, cwd=project, timeout=180,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr + str(pods.errors)
    (pod,) = runpod_fake.pods.values()
    assert {e["key"]: e["value"] for e in pod.env}["AWS_ACCESS_KEY_ID"] == "testing"  # as allowed
