"""A preemption storm: with the machine simulator, spot interruption notices arrive at random
(seeded) moments on three machines in a row, and at the same instant the OS SIGTERM of a shutdown
reaches every process of the machine (the agent and the script: a stop the agent must not lose,
whichever of them sees it first). The job must still finish, with auto-resume — no attempt may be
recorded ``succeeded`` early; each preemption may lose at most one save interval of progress;
every attempt, machine and dollar is in the ledger."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.chaos.checks import aws_alive
from tests.conftest import run_cli
from tests.support.machine_sim import MachineSimulator, SimMachine
from tests.support.remote import controller

SAVE_EVERY = 10  # steps between periodic checkpoints: the most a preemption may cost
PREEMPTIONS = 3
STEPS, STEP_S = 500, 0.04

STORM = """
import sys, time
from runctl import Checkpointer

steps, sleep, every = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ckpt = Checkpointer()
state = ckpt.load() or {"step": 0}
step = state["step"]
if step:
    print(f"resumed from step {step}", flush=True)
while step < steps:
    step += 1
    print(f"step {step}", flush=True)
    if ckpt.stop_requested:
        ckpt.save({"step": step}, step)
        print(f"stopped at step {step}", flush=True)
        sys.exit(0)
    if step % every == 0:
        ckpt.save({"step": step}, step)
    time.sleep(sleep)
print(f"done: step={step}", flush=True)
"""


@pytest.fixture
def cloud(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MachineSimulator]:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs")
    monkeypatch.setenv("RUNCTL_STORAGE__URI", "s3://runs/runctl")
    monkeypatch.setenv("RUNCTL_AWS__REGION", "us-east-1")
    sim = MachineSimulator(tmp_path / "machines", aws)
    yield sim
    sim.close()


def next_agent(cloud: MachineSimulator, seen: set[str], timeout: float = 120) -> SimMachine:
    """The next machine whose agent runs the script (so the agent's signal handling is set)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for machine in list(cloud.machines.values()):
            if machine.instance_id not in seen and machine.agent_pids() and machine.running("/code/train.py"):
                return machine
        time.sleep(0.1)
    raise AssertionError(f"no new agent within {timeout}s; simulator errors: {cloud.errors}")


def wait_for_steps(machine: SimMachine, timeout: float = 120) -> None:
    """Until the script on ``machine`` has printed a step: a notice that lands before the new
    attempt's script runs stops an attempt that did nothing (nothing is lost, but the log then has
    no "resumed from" line for it, and the per-preemption count below would be off)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in machine.root.rglob("attempt-*.log"):
            if re.search(r"^step \d+$", log.read_text(errors="replace"), re.M):
                return
        time.sleep(0.1)
    raise AssertionError(f"the script on {machine.instance_id} printed no step within {timeout}s")


def lost_steps(log: str) -> list[int]:
    """Per preemption: the last step the log shows before a resume, minus the resumed step."""
    lost, last = [], 0
    for line in log.splitlines():
        if match := re.fullmatch(r"step (\d+)", line.strip()):
            last = int(match.group(1))
        elif match := re.fullmatch(r"resumed from step (\d+)", line.strip()):
            lost.append(last - int(match.group(1)))
    return lost


def test_preemption_storm(cloud: MachineSimulator, aws: str, tmp_path: Path, figures: dict[str, Any]) -> None:
    rng = random.Random(2024)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(STORM)
    started = time.monotonic()
    proc = controller(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--spot", "--auto-resume", "--poll-interval", "0.3s", "-o", "json",
        "--", str(STEPS), str(STEP_S), str(SAVE_EVERY),
        cwd=project,
    )  # fmt: skip
    moments: list[float] = []
    try:
        seen: set[str] = set()
        for _ in range(PREEMPTIONS):
            machine = next_agent(cloud, seen)
            seen.add(machine.instance_id)
            wait_for_steps(machine)
            moments.append(round(rng.uniform(0.5, 4.0), 2))
            time.sleep(moments[-1])
            machine.imds.schedule_interruption(in_seconds=60)
            machine.os_signal(signal.SIGTERM)  # the shutdown's SIGTERM, at the same instant
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:] + str(cloud.errors)
    job = json.loads(stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == PREEMPTIONS + 1

    log = run_cli("logs", job["id"]).stdout
    assert f"done: step={STEPS}" in log
    lost = lost_steps(log)
    assert len(lost) == PREEMPTIONS, log[-2000:]
    events = json.loads(run_cli("events", "--job", job["id"], "-o", "json").stdout)
    assert len([e for e in events if e["kind"] == "job.preemption"]) == PREEMPTIONS
    assert all(0 <= n <= SAVE_EVERY for n in lost), lost

    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    assert shown["preemptions"] == PREEMPTIONS
    machines = [r for r in shown["resources"] if r["kind"] == "instance"]
    assert len(machines) == PREEMPTIONS + 1  # one machine per attempt, each on record
    assert all(r["state"] == "terminated" and r["rate_usd_per_hour"] for r in machines)
    assert shown["cost_usd"] > 0  # what the four machines cost is recorded
    assert aws_alive(aws) == {}  # every machine of every attempt is gone

    figures.update(
        preemptions=PREEMPTIONS,
        notice_after_agent_start_s=moments,
        lost_steps=lost,
        save_interval_steps=SAVE_EVERY,
        attempts=job["attempt"],
        machines=len(machines),
        cost_usd=shown["cost_usd"],
        wall_s=round(time.monotonic() - started, 1),
    )
