"""End to end on a bare machine image (Debian minbase: python3, no pip, no runctl) when a Docker
daemon is available: the controller ships the agent and the start script installs it (POSIX sh
is dash there; no curl or wget: Python's urllib downloads)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.machine_image import bare_image
from tests.support.machine_sim import MachineSimulator
from tests.support.remote import job_bucket


@pytest.fixture(scope="module")
def image() -> str:
    tag = bare_image()
    if tag is None:
        pytest.skip("no Docker daemon: the bare-image tests need one (CI=true makes this an error)")
    return tag


@pytest.fixture
def bare_cloud(
    image: str, aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MachineSimulator]:
    job_bucket(monkeypatch)
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws, shipped_agent=True, image=image)
    yield sim
    sim.close()


def test_the_image_is_bare(image: str) -> None:
    probe = (
        "python3 -c 'import sys; print(sys.version_info >= (3, 11))'; "
        "python3 -m pip --version; command -v runctl"
    )
    result = subprocess.run(
        ["docker", "run", "--rm", image, "sh", "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.splitlines()[0] == "True"
    assert "No module named pip" in result.stderr and "runctl" not in result.stdout


def test_a_job_runs_on_the_bare_image_with_the_shipped_agent(
    bare_cloud: MachineSimulator, project: Path
) -> None:
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--poll-interval", "0.3s", "-o", "json", "--", "12", "0.01",
        cwd=project, timeout=400,
    )  # fmt: skip
    assert result.stdout, result.stderr
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded", (job, bare_cloud.errors)
    assert bare_cloud.containers  # it ran in a container
    events = json.loads(run_cli("events", "--job", job["id"], "-o", "json").stdout)
    assert [e for e in events if e["kind"] == "job.bootstrap"]
