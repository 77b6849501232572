"""Remote training end to end on EC2: the controller (runctl CLI) against a moto server, the
machine simulator running exactly the SSM command the controller sent, the agent syncing to
S3 on moto, and a fake IMDS per machine for spot notices."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest

from runctl.core.ledger import Ledger
from tests.conftest import run_cli
from tests.support.fault_proxy import Fault, FaultProxy, Request, ec2_error
from tests.support.machine_sim import MachineSimulator
from tests.support.remote import (
    controller,
    job_bucket,
    wait_for_checkpoint_in_storage,
    wait_for_heartbeat_in_storage,
)


def instances(state: str | None = None) -> list[dict]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    found = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    return [i for i in found if state is None or i["State"]["Name"] == state]


def test_workflow_train_runs_collects_outputs_and_terminates(
    cloud: MachineSimulator, project: Path, tmp_path: Path
) -> None:
    hostile = ["'; rm -rf ~'", 'quote"s', "new\nline", "$HOME", "*"]
    out = tmp_path / "outputs"
    result = run_cli(
        "workflow",
        "train",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--poll-interval",
        "0.3s",
        "--output-dir",
        str(out),
        "-o",
        "json",
        "--",
        "30",
        "0.01",
        *hostile,
        cwd=project,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr + str(cloud.errors)
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded" and job["exit_code"] == 0
    assert (out / "result.txt").read_text() == "trained 30 steps\n"
    assert all(i["State"]["Name"] == "terminated" for i in instances())  # nothing left billing
    log = run_cli("logs", job["id"]).stdout
    assert f"argv: {hostile!r}" in log  # hostile arguments arrived unchanged as argv
    events = json.loads(run_cli("events", "--job", job["id"], "-o", "json").stdout)
    beats = [e for e in events if e["kind"] == "agent.heartbeat"]
    assert beats and "load_per_cpu" in beats[0]["data"]  # the agent's utilisation, for `top`
    machine = next(iter(cloud.machines.values()))
    assert not (machine.root.parent / "escaped").exists()


def test_a_failing_script_is_failed_not_resumed(cloud: MachineSimulator, project: Path) -> None:
    (project / "fail.py").write_text("import sys; print('boom'); sys.exit(3)\n")
    result = run_cli(
        "workflow",
        "train",
        "fail.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--auto-resume",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        cwd=project,
        timeout=180,
    )
    assert result.returncode == 3, result.stderr
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "failed" and job["attempt"] == 1
    assert not instances("running")


def test_spot_notice_then_auto_resume_on_a_new_machine(cloud: MachineSimulator, project: Path) -> None:
    proc = controller(
        "workflow",
        "train",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--spot",
        "--auto-resume",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        "--",
        "400",  # 20 s: the notice (polled every 5 s) lands mid-run
        "0.05",
        cwd=project,
    )
    try:
        first = cloud.wait_for_agent(timeout=60)
        wait_for_checkpoint_in_storage()  # the script runs and has saved: now the notice
        first.imds.schedule_interruption(in_seconds=60)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr + str(cloud.errors)
    job = json.loads(stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    log = run_cli("logs", job["id"]).stdout
    assert "stopped at step " in log, log + str(run_cli("events", "--job", job["id"]).stdout)
    stopped = int(log.split("stopped at step ")[1].split()[0])
    assert f"resumed from step {stopped}" in log  # nothing lost: resumed exactly where it stopped
    assert len(instances()) == 2 and not instances("running")  # one machine per attempt, both gone
    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    assert len([r for r in shown["resources"] if r["kind"] == "instance"]) == 2
    assert (shown["preemptions"], shown["restarts"]) == (1, 0)


def test_a_machine_that_vanishes_is_preempted(cloud: MachineSimulator, project: Path) -> None:
    proc = controller(
        "aws",
        "train",
        "new",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--wait",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        "--",
        "1000",
        "0.05",
        cwd=project,
    )
    try:
        machine = cloud.wait_for_agent(timeout=60)
        time.sleep(1)
        boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=[machine.instance_id])
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    job = json.loads(stdout)["job"]
    assert job["state"] == "preempted", stderr


def test_ctrl_c_detach_leaves_the_job_running_and_reattach_follows_it(
    cloud: MachineSimulator, project: Path
) -> None:
    proc = controller(
        "aws",
        "train",
        "new",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--wait",
        "--poll-interval",
        "0.3s",
        "--",
        "60",
        "0.05",
        cwd=project,
    )
    cloud.wait_for_agent(timeout=60)
    wait_for_heartbeat_in_storage()  # detach only once the agent has started
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "runctl jobs wait" in stderr
    assert instances("running")  # detach: the machine and the job go on
    job_id = stderr.split("runctl jobs wait ")[1].split(";")[0].split()[0]
    waited = run_cli("jobs", "wait", job_id, "--poll-interval", "0.3s", "-o", "json", timeout=120)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["job"]["state"] == "succeeded"
    assert not instances("running")


def test_ctrl_c_terminate_cancels_and_releases(cloud: MachineSimulator, project: Path) -> None:
    proc = controller(
        "aws",
        "train",
        "new",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--wait",
        "--on-interrupt",
        "terminate",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        "--",
        "1000",
        "0.05",
        cwd=project,
    )
    cloud.wait_for_agent(timeout=60)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert json.loads(stdout)["job"]["state"] == "cancelled"
    assert not instances("running")


def test_without_reachable_storage_nothing_is_created(aws: str, project: Path) -> None:
    result = run_cli("workflow", "train", "train.py", "--project-dir", str(project), cwd=project)
    assert result.returncode == 78 and "[storage] uri" in result.stderr
    assert instances() == []


def test_without_a_controller_the_agent_terminates_its_own_machine(
    cloud: MachineSimulator, project: Path
) -> None:
    started = run_cli(
        "aws",
        "train",
        "new",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "-o",
        "json",
        "--",
        "20",
        "0.01",
        cwd=project,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    job_id = json.loads(started.stdout)["job"]["id"]  # the controller is gone from here on
    deadline = time.monotonic() + 90
    while instances("running") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not instances("running")  # the dead-man switch: the agent terminated its own machine
    shown = json.loads(run_cli("jobs", "show", job_id, "-o", "json").stdout)
    assert shown["remote_status"]["state"] == "succeeded"
    assert shown["state"] == "running"  # the ledger learns the outcome when someone waits
    waited = run_cli("jobs", "wait", job_id, "--poll-interval", "0.3s", "-o", "json", timeout=60)
    assert json.loads(waited.stdout)["job"]["state"] == "succeeded"


def test_no_capacity_anywhere_is_its_own_outcome(
    fault_proxy: FaultProxy, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_bucket(monkeypatch, endpoint_url=fault_proxy.upstream_url)
    capacity = ec2_error("InsufficientInstanceCapacity")
    fault_proxy.rule = lambda r: capacity if r.action == "RunInstances" else None
    result = run_cli(
        "workflow",
        "train",
        "train.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "-o",
        "json",
        cwd=project,
        timeout=120,
    )
    assert result.returncode == 69, result.stderr
    jobs = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert [j["state"] for j in jobs] == ["no_capacity"]
    assert fault_proxy.count("RunInstances") >= 1
    assert instances() == []


def capacity_refused_for(rounds: int, then: Callable[[Request], Fault | None]) -> tuple[Callable, list[str]]:
    """A proxy rule refusing the first ``rounds`` placements for capacity (every zone of each:
    a zone after the first reuses the placement's client token with ``-N``), then ``then``."""
    capacity = ec2_error("InsufficientInstanceCapacity")
    tokens: list[str] = []  # one client token per placement

    def rule(request: Request) -> Fault | None:
        if request.action == "RunInstances":
            token = parse_qs(request.body.decode())["ClientToken"][0]
            if not any(token == t or token.startswith(t + "-") for t in tokens):
                tokens.append(token)
            if len(tokens) <= rounds:
                return capacity
        return then(request)

    return rule, tokens


def test_capacity_refused_three_times_waits_pending_then_runs(
    cloud: MachineSimulator, project: Path, isolated_env: Path
) -> None:
    states_while_refused: list[str] = []
    refuse, placements = capacity_refused_for(3, cloud.proxy.rule)

    def rule(request: Request) -> Fault | None:
        fault = refuse(request)
        if fault is not None and request.action == "RunInstances":
            with closing(Ledger(isolated_env / "ledger.db")) as ledger:
                states_while_refused.extend(j.state for j in ledger.list_jobs())
        return fault

    cloud.proxy.rule = rule
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--capacity-wait", "2m", "--poll-interval", "0.3s", "-o", "json", "--", "20", "0.01",
        cwd=project, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + str(cloud.errors)
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded" and len(placements) == 4
    assert states_while_refused and set(states_while_refused) == {"pending"}
    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    waits = [e["message"] for e in shown["decisions"] if e["kind"] == "recovery.capacity_wait"]
    assert [w.split(":")[0] for w in waits] == ["try 1", "try 2", "try 3"]
    assert "InsufficientInstanceCapacity" in waits[0]
    assert not instances("running")


def test_capacity_refused_past_the_wait_is_no_capacity_and_leaves_nothing(
    fault_proxy: FaultProxy, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_bucket(monkeypatch, endpoint_url=fault_proxy.upstream_url)
    fault_proxy.rule, placements = capacity_refused_for(10_000, lambda r: None)
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--capacity-wait", "3s", "-o", "json", cwd=project, timeout=120,
    )  # fmt: skip
    assert result.returncode == 69, result.stderr
    assert "no capacity within capacity_wait (3s" in result.stderr
    jobs = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert [j["state"] for j in jobs] == ["no_capacity"]
    assert len(placements) >= 2  # it did wait and try again
    assert instances() == []
    resources = json.loads(run_cli("resources", "list", "--all", "-o", "json").stdout)
    assert {r["state"] for r in resources} == {"create_failed"}


STUCK = """
import os, sys, time
from pathlib import Path
from runctl import Checkpointer

ckpt = Checkpointer()
state = ckpt.load()
if state:
    print(f"resumed from step {state['step']}", flush=True)
    (Path(os.environ["RUNCTL_OUTPUT_DIR"]) / "result.txt").write_text("done\\n")
    sys.exit(0)
for step in (1, 2, 3):
    print(f"step {step}", flush=True)
    ckpt.save({"step": step}, step)
time.sleep(3600)  # an NCCL deadlock: no line, no checkpoint, GPU at 0 %
"""


def test_a_hung_script_is_stopped_on_its_machine_and_restarted_from_its_checkpoint(
    cloud: MachineSimulator, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "gpu-bin"  # the machines' nvidia-smi: two GPUs at 0 %
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 0\necho 0\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (project / "stuck.py").write_text(STUCK)
    result = run_cli(
        "workflow", "train", "stuck.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--hang-timeout", "3s", "--grace-period", "2s", "--poll-interval", "0.3s", "-o", "json",
        cwd=project, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + str(cloud.errors)
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    restarts = [e["message"] for e in shown["decisions"] if e["kind"] == "job.restart"]
    assert len(restarts) == 1
    assert "attempt 1 hung: hung: hang restart 1 of max_hang_restarts (1)" in restarts[0]
    log = run_cli("logs", job["id"]).stdout
    assert "resumed from step 3" in log
    assert not instances("running")


def test_max_restarts_reruns_a_failed_script(cloud: MachineSimulator, project: Path) -> None:
    (project / "flaky.py").write_text(
        "import os, sys\nattempt = os.environ['RUNCTL_ATTEMPT']\nprint('attempt', attempt)\n"
        "sys.exit(1 if attempt == '1' else 0)\n"
    )
    result = run_cli(
        "workflow",
        "train",
        "flaky.py",
        "--project-dir",
        str(project),
        "--instance-type",
        "t3.micro",
        "--max-restarts",
        "1",
        "--poll-interval",
        "0.3s",
        "-o",
        "json",
        cwd=project,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    assert (shown["preemptions"], shown["restarts"]) == (0, 1)
    assert not instances("running")


def _job_id(stderr: str) -> str:
    return stderr.split("job ")[1].split()[0]


def test_ctrl_c_stop_keeps_the_machine_and_jobs_resume_continues_it(
    cloud: MachineSimulator, project: Path
) -> None:
    """--on-interrupt stop: the on-demand machine is stopped (verified, in the ledger), the job is
    ``stopped`` (not final); ``jobs resume`` starts the same machine and the agent continues from
    the checkpoint as attempt 2."""
    proc = controller(
        "aws", "train", "new", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--on-demand", "--wait", "--on-interrupt", "stop", "--poll-interval", "0.3s", "--", "200", "0.05",
        cwd=project,
    )  # fmt: skip
    cloud.wait_for_agent(timeout=60)
    wait_for_checkpoint_in_storage()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr + str(cloud.errors)
    job_id = _job_id(stderr)
    assert f"runctl jobs resume {job_id}" in stderr
    (stopped,) = instances()
    assert stopped["State"]["Name"] == "stopped"
    shown = json.loads(run_cli("jobs", "show", job_id, "-o", "json").stdout)
    assert shown["state"] == "stopped"
    machines = [r for r in shown["resources"] if r["kind"] == "instance"]
    assert [r["state"] for r in machines] == ["stopped"]

    resumed = run_cli(
        "jobs", "resume", job_id, "--wait", "--poll-interval", "0.3s", "-o", "json", timeout=240
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr + str(cloud.errors)
    job = json.loads(resumed.stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    (same,) = instances()  # the same machine, started again, and released at the end
    assert same["InstanceId"] == stopped["InstanceId"] and same["State"]["Name"] != "running"
    released = json.loads(run_cli("jobs", "show", job_id, "-o", "json").stdout)["resources"]
    assert [r["state"] for r in released if r["kind"] == "instance"] == ["terminated"]
    log = run_cli("logs", job_id).stdout
    saved = int(log.split("stopped at step ")[1].split()[0])
    assert f"resumed from step {saved}" in log


def test_stop_is_refused_for_a_spot_machine_before_anything_is_created(
    cloud: MachineSimulator, project: Path
) -> None:
    result = run_cli(
        "aws", "train", "new", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--spot", "--on-interrupt", "stop", cwd=project,
    )  # fmt: skip
    assert result.returncode == 65, result.stderr
    assert "spot instance cannot be stopped" in result.stderr and "hint:" in result.stderr
    assert instances() == []
    assert json.loads(run_cli("jobs", "list", "-o", "json").stdout) == []


def test_jobs_wait_relaunches_with_the_stored_request(cloud: MachineSimulator, project: Path) -> None:
    """A job submitted without --wait; after a spot notice, `jobs wait` (no options) resumes it on a
    new machine of the same spec, with its own --auto-resume and --keep-last-n."""
    submitted = run_cli(
        "aws", "train", "new", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--spot", "--auto-resume", "--keep-last-n", "2", "--", "400", "0.05", cwd=project,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stderr)
    stored = json.loads(run_cli("jobs", "show", job_id, "-o", "json").stdout)
    request = stored["request"]
    assert request["auto_resume"] is True and request["keep_last_n"] == 2
    assert request["spec"]["instance_type"] == "t3.micro" and request["spec"]["spot"] is True
    first = cloud.wait_for_agent(timeout=60)
    wait_for_checkpoint_in_storage()
    first.imds.schedule_interruption(in_seconds=60)
    waited = run_cli("jobs", "wait", job_id, "--poll-interval", "0.3s", "-o", "json", timeout=300)
    assert waited.returncode == 0, waited.stderr + str(cloud.errors)
    job = json.loads(waited.stdout)["job"]
    assert job["state"] == "succeeded" and job["attempt"] == 2
    both = instances()
    assert len(both) == 2 and {i["InstanceType"] for i in both} == {"t3.micro"}
    assert all(i.get("InstanceLifecycle") == "spot" for i in both)


def test_the_agent_uses_the_storage_settings_of_the_controller(
    cloud: MachineSimulator, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[storage] endpoint_url and s3_checksums reach the machine: the agent's uploads go to the
    configured endpoint (here a recording proxy in front of moto), not to the SDK's default."""
    store = FaultProxy(cloud.endpoint)
    monkeypatch.setenv("RUNCTL_STORAGE__ENDPOINT_URL", store.url)
    monkeypatch.setenv("RUNCTL_STORAGE__S3_CHECKSUMS", "false")
    try:
        result = run_cli(
            "workflow",
            "train",
            "train.py",
            "--project-dir",
            str(project),
            "--instance-type",
            "t3.micro",
            "--poll-interval",
            "0.3s",
            "-o",
            "json",
            "--",
            "20",
            "0.01",
            cwd=project,
            timeout=180,
        )
    finally:
        store.close()
    assert result.returncode == 0, result.stderr + str(cloud.errors)
    assert json.loads(result.stdout)["job"]["state"] == "succeeded"
    # only the agent writes the heartbeat: it reached the configured endpoint
    beats = [r for r in store.requests if r.method == "PUT" and r.path.split("?")[0].endswith("/status.json")]
    assert beats, [f"{r.method} {r.path}" for r in store.requests][:20]
    uploads = [r for r in store.requests if r.method == "PUT" and "/checkpoints/ckpt" in r.path]
    assert uploads  # the agent's checkpoint uploads, without S3's checksum header (s3_checksums)
    assert not any("x-amz-checksum-crc32" in {k.lower() for k in r.headers} for r in uploads)


# -- agent start: SSM registration, the start deadline, Ctrl-C before the first heartbeat ----------


def _train(*extra: str, project: Path, timeout: float = 180) -> tuple[int, dict, str]:
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--poll-interval", "0.3s", "-o", "json", *extra, cwd=project, timeout=timeout,
    )  # fmt: skip
    job = json.loads(result.stdout)["job"] if result.stdout.strip() else {}
    return result.returncode, job, result.stderr


def test_the_start_command_waits_for_a_slow_ssm_registration(cloud: MachineSimulator, project: Path) -> None:
    cloud.register_after = [3.0]  # SSM refuses the command for 3 s after the machine runs
    code, job, stderr = _train("--", "20", "0.01", project=project)
    assert code == 0, stderr + str(cloud.errors)
    assert job["state"] == "succeeded"
    assert cloud.proxy.count("DescribeInstanceInformation") >= 2  # it waited for registration
    assert not instances("running")


def test_a_machine_that_never_registers_is_failed_setup_and_released(
    cloud: MachineSimulator, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCTL_REMOTE__AGENT_START_TIMEOUT", "3s")
    cloud.register_after = [None]
    code, _, stderr = _train(project=project, timeout=120)
    assert code == 80 and "agent_start_timeout" in stderr, stderr
    [job] = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert job["state"] == "failed_setup" and "SSM" in job["detail"]
    assert not instances("running")  # released: nothing bills
    assert cloud.proxy.count("SendCommand") == 0 or not cloud.ssm.list_commands()["Commands"]


def test_a_replacement_that_never_registers_ends_the_job_and_is_released(
    cloud: MachineSimulator, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error escapes the wait loop (starting attempt 2): the job still gets an outcome."""
    monkeypatch.setenv("RUNCTL_REMOTE__AGENT_START_TIMEOUT", "3s")
    cloud.register_after = [0.5, None]
    proc = controller(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--spot", "--auto-resume", "--poll-interval", "0.3s", "-o", "json", "--", "400", "0.05",
        cwd=project,
    )  # fmt: skip
    try:
        first = cloud.wait_for_agent(timeout=60)
        wait_for_checkpoint_in_storage()
        first.imds.schedule_interruption(in_seconds=60)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 80, stderr + str(cloud.errors)
    job = json.loads(stdout)["job"]
    assert job["state"] == "failed_setup" and job["attempt"] == 2, job
    assert "agent_start_timeout" in job["detail"]
    assert not instances("running")  # both machines gone
    assert len(instances()) == 2


def test_an_agent_that_never_starts_is_failed_setup_within_the_deadline(
    cloud: MachineSimulator, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCTL_REMOTE__AGENT_START_TIMEOUT", "4s")
    cloud.broken_start = True  # the start script fails on the machine
    code, job, stderr = _train(project=project, timeout=120)
    assert job["state"] == "failed_setup", stderr + str(cloud.errors)
    assert code == 80 and "wrote no heartbeat" in job["detail"] and "SSM command" in job["detail"]
    assert not instances("running")  # the machine was released


def test_ctrl_c_before_the_agent_started_releases_instead_of_detaching(
    cloud: MachineSimulator, project: Path
) -> None:
    cloud.broken_start = True
    proc = controller(
        "aws", "train", "new", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--wait", "--poll-interval", "0.3s", "-o", "json",
        cwd=project,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not cloud.ssm.list_commands()["Commands"] and time.monotonic() < deadline:
            time.sleep(0.1)  # the start command was sent: the controller is waiting for a heartbeat
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    job = json.loads(stdout)["job"]
    assert job["state"] == "cancelled" and "before the agent started" in job["detail"]
    assert not instances("running")  # never left billing


def test_after_a_resume_the_log_is_followed_from_where_it_was(cloud: MachineSimulator, project: Path) -> None:
    proc = controller(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--spot", "--auto-resume", "--poll-interval", "0.3s", "--", "300", "0.05", "first-attempt",
        cwd=project,
    )  # fmt: skip
    try:
        first = cloud.wait_for_agent(timeout=60)
        wait_for_checkpoint_in_storage()
        first.imds.schedule_interruption(in_seconds=60)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr + str(cloud.errors)
    # each attempt prints its argv once: twice in all, not attempt 1's again after the resume
    assert stdout.count("argv: ['first-attempt']") == 2, stdout
    assert stdout.count("stopped at step") == 1 and stdout.count("resumed from step") == 1


def test_aws_train_takes_the_image_and_instance_profile_of_the_new_machine(
    cloud: MachineSimulator, project: Path
) -> None:
    from tests.support.aws import al2023_image

    image = al2023_image(cloud.endpoint)
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_instance_profile(InstanceProfileName="trainer")
    result = run_cli(
        "aws", "train", "new", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--ami", image, "--iam-instance-profile", "trainer", "-o", "json", "--", "5", "0.01",
        cwd=project, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + str(cloud.errors)
    [instance] = instances()
    assert instance["ImageId"] == image
    assert instance["IamInstanceProfile"]["Arn"].endswith("/trainer")
    refused = run_cli("aws", "train", instance["InstanceId"], "train.py", "--ami", image, cwd=project)
    assert refused.returncode == 64 and "apply to a new machine" in refused.stderr
    assert len(instances()) == 1
