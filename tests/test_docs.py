"""The docs tell the truth: the generated references are current, every command, option and
config key the README and the docs mention exists (and every one that exists is documented),
the site builds strictly, and the examples run (the collector: ``tests/support/doc_blocks.py``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO, run_cli
from tests.support import doc_blocks
from tests.support.fake_runpod import FakeRunpod
from tests.support.machine_sim import MachineSimulator
from tests.support.pod_sim import PodSimulator

GETTING_STARTED = [
    REPO / "docs" / "getting-started" / name
    for name in ("install.md", "first-local-run.md", "first-ec2-run.md", "first-runpod-run.md")
]


@pytest.fixture
def reader_env(
    aws: str, runpod_fake: FakeRunpod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """What a reader's shell has: AWS (moto, with the machine simulator playing EC2 and the
    docs' bucket), RunPod (the fake, with the pod simulator), runctl on PATH, a fresh state."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="my-runctl-bucket")
    machines = MachineSimulator(tmp_path / "machines", aws)
    pods = PodSimulator(runpod_fake, tmp_path / "pods")
    yield {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    machines.close()
    pods.close()
    assert not machines.errors and not pods.errors, machines.errors + pods.errors


def run_pages(pages: list[Path], cwd: Path, env: dict[str, str]) -> None:
    for page in pages:
        for block in doc_blocks.blocks(page):
            if block.runs:
                doc_blocks.run(block, cwd, env)


@pytest.mark.slow
def test_getting_started_runs_from_nothing_to_a_cost_report(
    reader_env: dict[str, str], tmp_path: Path
) -> None:
    cwd = tmp_path / "my-project"
    cwd.mkdir()
    run_pages(GETTING_STARTED, cwd, reader_env)

    jobs = json.loads(run_cli("jobs", "list", "-o", "json", cwd=cwd).stdout)
    local = sorted((j for j in jobs if j["provider"] == "local"), key=lambda j: j["created_at"])
    assert [j["state"] for j in local] == ["succeeded", "interrupted", "succeeded"], local
    resumed_log = run_cli("logs", local[2]["id"], cwd=cwd).stdout
    stopped = run_cli("logs", local[1]["id"], cwd=cwd).stdout.split("stopped at step ")[1].split()[0]
    assert f"resumed from step {stopped}" in resumed_log  # nothing lost
    remote = {j["provider"]: j for j in jobs if j["provider"] != "local"}
    assert remote["aws"]["state"] == "succeeded" and remote["runpod"]["state"] == "succeeded", remote
    ec2 = boto3.client("ec2", region_name="us-east-1").describe_instances()["Reservations"]
    assert [i["State"]["Name"] for r in ec2 for i in r["Instances"]] == ["terminated"]  # nothing leaks
    report = json.loads(run_cli("cost", "report", "--by", "provider", "-o", "json", cwd=cwd).stdout)
    assert report
