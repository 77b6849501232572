"""What the remote-training tests (EC2 and RunPod) share: the training script they run, the
project holding it, the job-storage bucket on moto, the controller as a background process, and
a wait for the first checkpoint to reach storage."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.machine_sim import MachineSimulator

TRAIN = """
import os, sys, time
from pathlib import Path
from runctl import Checkpointer

steps, sleep = int(sys.argv[1]), float(sys.argv[2])
print("argv:", sys.argv[3:], flush=True)
ckpt = Checkpointer()
state = ckpt.load() or {"step": 0}
if state["step"]:
    print(f"resumed from step {state['step']}", flush=True)
step = state["step"]
while step < steps:
    step += 1
    stop = ckpt.stop_requested
    if step % 10 == 0 or stop:
        ckpt.save({"step": step}, step)
    if stop:
        print(f"stopped at step {step}", flush=True)
        sys.exit(0)
    time.sleep(sleep)
out = Path(os.environ["RUNCTL_OUTPUT_DIR"])
(out / "result.txt").write_text(f"trained {step} steps\\n")
print(f"done: step={step}", flush=True)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory holding ``train.py`` (:data:`TRAIN`)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    return root


def job_bucket(monkeypatch: pytest.MonkeyPatch, *, endpoint_url: str | None = None) -> None:
    """The ``runs`` bucket on moto, set as the jobs' storage (``[storage] uri``)."""
    boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint_url).create_bucket(Bucket="runs")
    monkeypatch.setenv("RUNCTL_STORAGE__URI", "s3://runs/runctl")


def wait_for_checkpoint_in_storage(timeout: float = 120) -> None:
    """Until a published checkpoint (its manifest) is in the job storage bucket."""
    s3 = boto3.client("s3", region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket="runs", Prefix="runctl/jobs/").get("Contents", [])
        if any(".runctl-manifests/" in o["Key"] for o in listed):
            return
        time.sleep(0.2)
    raise AssertionError("no checkpoint reached storage")


def wait_for_heartbeat_in_storage(timeout: float = 120) -> None:
    """Until an agent has written its first status (heartbeat) into the job storage bucket."""
    s3 = boto3.client("s3", region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket="runs", Prefix="runctl/jobs/").get("Contents", [])
        if any(o["Key"].endswith("/status.json") for o in listed):
            return
        time.sleep(0.2)
    raise AssertionError("no agent heartbeat reached storage")


def controller(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runctl", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def cloud(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MachineSimulator]:
    """EC2 machines played by the machine simulator on the moto server, with the job bucket."""
    job_bucket(monkeypatch)
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws)
    yield sim
    sim.close()
