"""The agent travels with the job: the controller ships its own runctl (wheel + wheelhouse,
SHA-256 manifest) and the start script installs it on a machine without runctl, from no index."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runctl.core.config import RemoteConfig, load_config
from runctl.core.errors import ConfigError
from runctl.workflows import agent_shipping
from tests.conftest import run_cli
from tests.support.agent_source import SESSION_CACHE
from tests.support.fake_runpod import FakeRunpod
from tests.support.machine_sim import MachineSimulator
from tests.support.pod_sim import PodSimulator
from tests.support.remote import job_bucket


@pytest.fixture
def bare_cloud(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MachineSimulator]:
    job_bucket(monkeypatch)
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws, shipped_agent=True)
    yield sim
    sim.close()


def host_remote() -> RemoteConfig:
    return RemoteConfig(agent_platforms=["host"], agent_cache_dir=SESSION_CACHE)


def train(project: Path, script: str = "train.py", *extra: str) -> dict:
    result = run_cli(
        "workflow", "train", script, "--project-dir", str(project), "--instance-type", "t3.micro",
        "--poll-interval", "0.3s", "-o", "json", *extra, "--", "12", "0.01",
        cwd=project, timeout=300,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["job"]


def test_the_wheelhouse_holds_this_runctl_its_dependencies_and_pip_and_is_cached() -> None:
    house = agent_shipping.wheelhouse(host_remote())
    names = [name for name, _ in house.files]
    assert house.requirement.startswith("runctl==")
    assert any(n.startswith("runctl-") for n in names) and any(n.startswith("pip-") for n in names)
    assert any(n.startswith("boto3-") for n in names) and any(n.startswith("pydantic_core-") for n in names)
    for name, sha in house.files:
        import hashlib

        assert hashlib.sha256((house.directory / name).read_bytes()).hexdigest() == sha
    before = (house.directory / "wheelhouse.json").stat().st_mtime_ns
    again = agent_shipping.wheelhouse(host_remote())
    assert again == house and (house.directory / "wheelhouse.json").stat().st_mtime_ns == before


def test_agent_source_is_validated_on_load() -> None:
    with pytest.raises(ConfigError, match="agent_source"):
        load_config(environ={"RUNCTL_REMOTE__AGENT_SOURCE": "pypi"})
    loaded = load_config(environ={"RUNCTL_REMOTE__AGENT_SOURCE": "pip:runctl==0.1.0"})
    assert loaded.config.remote.agent_source == "pip:runctl==0.1.0"


def test_a_machine_without_runctl_gets_the_shipped_agent(bare_cloud: MachineSimulator, project: Path) -> None:
    job = train(project)
    assert job["state"] == "succeeded", (job, bare_cloud.errors)
    machine = next(iter(bare_cloud.machines.values()))
    agents = list((machine.root / ".runctl" / "agent").iterdir())
    assert len(agents) == 1 and (agents[0] / ".runctl-complete").exists()
    assert (agents[0] / "bin" / "runctl").exists()  # the agent ran from its own virtualenv
    ssm = boto3.client("ssm", region_name="us-east-1")
    sent = "\n".join("\n".join(c["Parameters"]["commands"]) for c in ssm.list_commands()["Commands"])
    assert "RUNCTL_AGENT_MANIFEST_URL" in sent and "pip install runctl" not in sent
    events = json.loads(run_cli("events", "--job", job["id"], "-o", "json").stdout)
    assert [e for e in events if e["kind"] == "job.bootstrap" and e["data"]["attempt"] == 1]


def test_a_tampered_wheel_ends_failed_setup_and_nothing_runs(
    bare_cloud: MachineSimulator, project: Path
) -> None:
    house = agent_shipping.wheelhouse(host_remote())
    name, sha = next((n, s) for n, s in house.files if n.startswith("runctl-"))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket="runs", Key=f"runctl/agent/{sha}/{name}", Body=b"not the shipped wheel")
    (project / "marker.py").write_text("from pathlib import Path\nPath('/tmp/should-not').write_text('x')\n")
    started = time.monotonic()
    job = train(project, "train.py")
    assert job["state"] == "failed_setup", job
    assert "SHA-256 mismatch" in (job["detail"] or "") and name in job["detail"]
    assert time.monotonic() - started < 120  # reported by the start script, not by a timeout
    machine = next(iter(bare_cloud.machines.values()))
    assert not (machine.root / ".runctl" / "agent").exists()  # nothing installed
    assert not machine.agent_pids() and not list(machine.root.rglob("attempt-1.log"))


OLD_PYTHON = Path("/root/.pyenv/versions/3.9.18/bin/python3.9")


@pytest.mark.skipif(not OLD_PYTHON.exists(), reason="no Python 3.9 on this machine to play an old image")
def test_a_machine_with_only_an_old_python_and_no_uv_ends_failed_setup_saying_so(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    job_bucket(monkeypatch)
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws, shipped_agent=True, machine_python=OLD_PYTHON)
    try:
        job = train(project)
    finally:
        sim.close()
    assert job["state"] == "failed_setup", job
    assert "Python (3.9) is older than 3.11" in job["detail"] and "no uv wheel" in job["detail"]


def test_a_pod_gets_the_shipped_agent_too(
    aws: str, runpod_fake: FakeRunpod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    job_bucket(monkeypatch)
    sim = PodSimulator(runpod_fake, tmp_path / "pods", shipped_agent=True)
    try:
        result = run_cli(
            "workflow", "train", "train.py", "--provider", "runpod", "--max-duration", "1h",
            "--project-dir", str(project), "--poll-interval", "0.3s", "-o", "json", "--", "12", "0.01",
            cwd=project, timeout=300,
        )  # fmt: skip
    finally:
        sim.close()
    assert result.returncode == 0, result.stderr + str(sim.errors)
    assert json.loads(result.stdout)["job"]["state"] == "succeeded"
    pod = next(iter(runpod_fake.pods.values()))
    assert "RUNCTL_AGENT_MANIFEST_URL" in {e["key"] for e in pod.env}
    assert list((tmp_path / "pods" / pod.id / ".runctl" / "agent").glob("*/bin/runctl"))


def test_a_wheelhouse_that_cannot_be_built_fails_before_any_machine_exists(
    bare_cloud: MachineSimulator, project: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "-o", "json", cwd=project, timeout=300,
        env={"RUNCTL_REMOTE__AGENT_CACHE_DIR": str(tmp_path / "cold-cache"), "PIP_NO_INDEX": "1",
             "PIP_FIND_LINKS": str(empty), "PIP_CONFIG_FILE": "/dev/null"},
    )  # fmt: skip
    assert result.returncode == 80, result.stderr
    assert "could not build the agent's wheelhouse" in result.stderr
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert not [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    jobs = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert [j["state"] for j in jobs] == ["failed_setup"]
