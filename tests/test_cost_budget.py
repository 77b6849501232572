"""Budgets that refuse to overspend: launches refused before any mutating request reaches the
cloud (asserted on the fault proxy's and the fake RunPod's request logs), warnings, the
override, and running jobs stopped gracefully (checkpoint kept) at their ``max_cost_usd``."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from runctl.agent.runner import AgentOptions, run_agent
from runctl.agent.sync import STATUS_KEY, STOP_KEY, JobSync, request_stop
from runctl.core.ledger import Ledger
from runctl.storage.local import LocalStorage
from tests.conftest import run_cli
from tests.support.aws import al2023_image
from tests.support.fake_runpod import FakeRunpod
from tests.support.fault_proxy import FaultProxy

MUTATIONS = ("RunInstances", "CreateVolume", "AttachVolume", "SendCommand", "CreateTags")

TRAIN = """
import sys, time
from runctl import Checkpointer

ckpt = Checkpointer()
state = ckpt.load() or {"step": 0}
step = state["step"]
while step < 100000:
    step += 1
    stop = ckpt.stop_requested
    if stop:
        ckpt.save({"step": step}, step)
        print(f"saved at step {step}", flush=True)
        sys.exit(0)
    time.sleep(0.05)
"""


def ledger_at(state: Path) -> Ledger:
    state.mkdir(parents=True, exist_ok=True)
    return Ledger(state / "ledger.db")


def spend_now(state: Path, usd_per_second: float) -> None:
    """Something in the ledger has been billing since a second ago at ``usd_per_second``."""
    ledger = ledger_at(state)
    row = ledger.record_intent(provider="local", kind="process")
    ledger.mark_created(row.id, cloud_id="p-1", state="x", billable=False, rate_usd_per_hour=1.0)
    ledger.close()
    conn = sqlite3.connect(state / "ledger.db")
    conn.execute(
        "INSERT INTO usage (resource_id, started_at, ended_at, rate_usd_per_hour) VALUES (?,?,?,?)",
        (row.id, time.time() - 1.0, None, usd_per_second * 3600),
    )
    conn.commit()
    conn.close()


def mutations(proxy: FaultProxy) -> list[str]:
    return [r.action for r in proxy.requests if r.action in MUTATIONS]


# -- launches refused before they cost anything ------------------------------------------------


def test_aws_create_over_the_hourly_limit_is_refused_before_run_instances(fault_proxy, aws, isolated_env):
    result = run_cli("aws", "create", "t3.micro", env={"RUNCTL_COST__MAX_HOURLY_USD": "0.005"})
    assert result.returncode == 79, result.stderr
    assert "estimate: 1 x t3.micro" in result.stderr and "$0.0104/h" in result.stderr
    assert "launch refused" in result.stderr and "max_hourly_usd = $0.005/h" in result.stderr
    assert "hint:" in result.stderr and "--over-budget" in result.stderr
    assert mutations(fault_proxy) == []
    assert fault_proxy.count("DescribeInstanceTypes") >= 1  # the plan's read-only pricing calls
    assert ledger_at(isolated_env).list_resources() == []

    dry = run_cli(
        "aws", "create", "t3.micro", "--dry-run", "-o", "json", env={"RUNCTL_COST__MAX_HOURLY_USD": "0.005"}
    )
    assert dry.returncode == 0 and json.loads(dry.stdout)["budget"]["allowed"] is False
    assert mutations(fault_proxy) == []


def test_over_budget_launches_anyway_and_says_so(fault_proxy, aws, isolated_env):
    env = {"RUNCTL_COST__MAX_HOURLY_USD": "0.005"}
    result = run_cli("aws", "create", "t3.micro", "--over-budget", "-o", "id", env=env)
    assert result.returncode == 0, result.stderr
    assert fault_proxy.count("RunInstances") == 1
    events = [e for e in ledger_at(isolated_env).events(limit=100) if e.kind == "budget.override"]
    assert len(events) == 1 and "max_hourly_usd" in events[0].message


def test_a_launch_near_a_limit_warns(fault_proxy, aws):
    result = run_cli("aws", "create", "t3.micro", env={"RUNCTL_COST__MAX_HOURLY_USD": "0.012"})
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "87% of [cost] max_hourly_usd" in result.stderr


def test_a_used_up_budget_refuses_before_any_request(fault_proxy, aws, isolated_env):
    spend_now(isolated_env, usd_per_second=10.0)  # $10 already spent this month
    result = run_cli("aws", "create", "t3.micro", env={"RUNCTL_COST__BUDGET_USD": "5"})
    assert result.returncode == 79, result.stderr
    assert "spent this month" in result.stderr and "budget_usd = $5.00" in result.stderr
    assert fault_proxy.requests == []  # not even the read-only plan


def test_an_unknown_rate_is_refused_while_a_budget_is_set(fault_proxy, aws):
    # m6a.large exists (moto knows it) but is not in the price catalogue
    env = {"RUNCTL_COST__BUDGET_USD": "100"}
    result = run_cli("aws", "create", "m6a.large", "--ami", al2023_image(aws), env=env)
    assert result.returncode == 79, result.stderr
    assert "rate is unknown" in result.stderr and mutations(fault_proxy) == []


def test_runpod_create_is_refused_before_any_deploy(runpod_fake: FakeRunpod, isolated_env):
    result = run_cli("runpod", "create", "--gpu", "RTX 4090", env={"RUNCTL_COST__MAX_HOURLY_USD": "0.5"})
    assert result.returncode == 79, result.stderr
    assert "$0.69/h" in result.stderr and "--over-budget" in result.stderr
    assert runpod_fake.count("podFindAndDeployOnDemand") == 0
    assert runpod_fake.count("podRentInterruptable") == 0
    assert runpod_fake.live_pods() == [] and ledger_at(isolated_env).list_resources() == []


def test_a_used_up_budget_refuses_runpod_before_any_request(runpod_fake: FakeRunpod, isolated_env):
    spend_now(isolated_env, usd_per_second=10.0)
    env = {"RUNCTL_COST__BUDGET_USD": "5", "RUNCTL_COST__BUDGET_PERIOD": "day"}
    result = run_cli("runpod", "create", "--gpu", "RTX 4090", env=env)
    assert result.returncode == 79 and "spent this day" in result.stderr, result.stderr
    assert runpod_fake.requests == []


def test_workflow_train_worst_case_over_the_job_limit_is_refused(fault_proxy, aws, tmp_path, isolated_env):
    (tmp_path / "train.py").write_text(TRAIN)
    env = {
        "RUNCTL_COST__MAX_COST_USD": "0.05",
        "RUNCTL_STORAGE__URI": "s3://runs/runctl",
        "RUNCTL_AWS__REGION": "us-east-1",
    }
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(tmp_path), "--instance-type", "t3.micro",
        "--max-duration", "10h", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 79, result.stderr
    assert "worst case $0.1040 over 10h" in result.stderr
    assert "max_cost_usd = $0.0500" in result.stderr
    assert mutations(fault_proxy) == [] and fault_proxy.count("PutObject") == 0
    assert ledger_at(isolated_env).list_jobs() == []  # nothing recorded: the ledger as it was


def test_runpod_train_is_refused_before_any_deploy(runpod_fake: FakeRunpod, tmp_path, isolated_env):
    (tmp_path / "train.py").write_text(TRAIN)
    env = {"RUNCTL_COST__MAX_COST_USD": "1", "RUNCTL_STORAGE__URI": "s3://runs/runctl"}
    result = run_cli(
        "runpod", "train", "new", "train.py", "--project-dir", str(tmp_path), "--gpu", "RTX 4090",
        "--max-duration", "2h", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 79, result.stderr
    assert "worst case $1.38 over 2h" in result.stderr
    assert (
        runpod_fake.count("podFindAndDeployOnDemand") == 0 and runpod_fake.count("podRentInterruptable") == 0
    )
    assert ledger_at(isolated_env).list_jobs() == []


def test_estimate_shows_the_verdict_without_launching(fault_proxy, aws):
    env = {"RUNCTL_COST__MAX_COST_USD": "5"}
    result = run_cli(
        "cost",
        "estimate",
        "aws",
        "-t",
        "t3.micro",
        "--count",
        "2",
        "--max-duration",
        "300h",
        "-o",
        "json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["usd_per_hour"] == pytest.approx(0.0208) and data["worst_case_usd"] == pytest.approx(6.24)
    assert data["budget"]["allowed"] is False and "max_cost_usd" in data["budget"]["refusals"][0]
    assert mutations(fault_proxy) == []


# -- running jobs stopped at their limit, checkpoint first ---------------------------------------


def test_a_local_job_over_max_cost_is_cancelled_with_its_checkpoint(tmp_path, isolated_env):
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = {
        "RUNCTL_LOCAL__RATE_USD_PER_HOUR": "1800",  # $0.50 a second, checked every second
        "RUNCTL_COST__MAX_COST_USD": "2",
        "RUNCTL_COST__WARN_AT": "0.5",  # some check lands in [$1, $2): a warning first
        "RUNCTL_LOCAL__GRACE_PERIOD": "20s",
    }
    started = time.monotonic()
    result = run_cli("local", str(script), "-o", "json", env=env, timeout=60)
    assert result.returncode == 79, result.stderr
    assert time.monotonic() - started < 30
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "cancelled" and job["exit_code"] == 79
    assert "max_cost_usd = $2.00" in job["detail"] and "exit code 0" in job["detail"]
    checkpoint = Path(job["last_checkpoint"])
    assert checkpoint.is_file() and checkpoint.parent == Path(job["checkpoint_dir"])
    ledger = ledger_at(isolated_env)
    kinds = [e.kind for e in ledger.events(job_id=job["id"], limit=100)]
    assert kinds.index("budget.warning") < kinds.index("budget.stop")
    log = Path(job["log_path"]).read_text()
    assert "saved at step" in log
    from runctl.core.cost import job_cost

    assert 2.0 <= job_cost(ledger, job["id"]) < 6.0  # stopped soon after the limit, not killed late


def test_the_agent_stops_gracefully_on_the_controllers_request(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    options = AgentOptions(
        job_id="j-budget",
        script=str(code / "train.py"),
        workdir=tmp_path / "work",
        heartbeat=0.2,
        grace_period=20,
    )
    request_stop(storage, attempt=2, reason="not for this attempt")  # another attempt's: ignored

    def controller() -> None:
        deadline = time.monotonic() + 30
        while (storage.read_json(STATUS_KEY) or {}).get("state") != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        request_stop(storage, attempt=1, reason="job cost $1.00 reached [cost] max_cost_usd = $1.00")

    thread = threading.Thread(target=controller)
    thread.start()
    result = run_agent(options, storage)
    thread.join()
    assert result.state == "cancelled" and result.exit_code == 79
    assert result.detail and "max_cost_usd = $1.00" in result.detail
    status = storage.read_json(STATUS_KEY)
    assert status["state"] == "cancelled" and "max_cost_usd" in status["detail"]
    latest = storage.latest_checkpoint("checkpoints")
    assert latest is not None and latest.step is not None and latest.step > 1  # saved on the stop


def test_a_stop_request_for_another_attempt_is_ignored(tmp_path):
    storage = LocalStorage(tmp_path)
    sync = JobSync(storage, tmp_path / "ck", tmp_path / "log", {"attempt": 3})
    assert sync.stop_request() is None
    request_stop(storage, attempt=2, reason="old")
    assert sync.stop_request() is None
    request_stop(storage, attempt=3, reason="now")
    assert sync.stop_request() == "now" and storage.exists(STOP_KEY)


def test_a_remote_job_over_max_cost_is_stopped_by_its_agent(aws, tmp_path, isolated_env):
    """End to end on the machine simulator: the controller sees the job pass its limit, writes
    the stop request; the agent's heartbeat stops the script, which saves; the job is cancelled."""
    import boto3

    from tests.support.machine_sim import MachineSimulator

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs")
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    # t3.micro bills at least 60 s: $0.000173, over this limit as soon as it runs
    env = {
        "RUNCTL_COST__MAX_COST_USD": "0.0001",
        "RUNCTL_STORAGE__URI": "s3://runs/runctl",
        "RUNCTL_AWS__REGION": "us-east-1",
    }
    sim = MachineSimulator(tmp_path / "machines", aws)
    try:
        refused = run_cli(
            "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
            env=env, cwd=project,
        )  # fmt: skip
        assert refused.returncode == 79 and "60 s billing minimum" in refused.stderr
        result = run_cli(
            "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
            "--poll-interval", "0.3s", "--over-budget", "-o", "json", env=env, cwd=project, timeout=180,
        )  # fmt: skip
    finally:
        sim.close()
    assert result.returncode == 79, result.stderr + str(sim.errors)
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "cancelled" and job["exit_code"] == 79
    assert "max_cost_usd = $0.0001" in job["detail"]
    assert "asking the agent to stop it" in result.stderr
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket="runs", Prefix=f"runctl/jobs/{job['id']}/")["Contents"]
    ]
    assert any("/checkpoints/" in k for k in keys), keys  # saved on the stop, kept
    assert any(k.endswith("control/stop.json") for k in keys)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    states = [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert states and all(s == "terminated" for s in states)
    kinds = [e.kind for e in ledger_at(isolated_env).events(job_id=job["id"], limit=200)]
    assert "budget.stop" in kinds
