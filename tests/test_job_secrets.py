"""The job's variables and secrets reach the script through the job's storage only: never in
SSM's command history, the ledger, the logs or any output; the storage object goes with the job."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from tests.conftest import run_cli
from tests.support.machine_sim import MachineSimulator

SECRET = "s3cr3t-Value-8f41c2"
SCRIPT = """
import os
from pathlib import Path
out = Path(os.environ["RUNCTL_OUTPUT_DIR"])
(out / "seen.txt").write_text(os.environ["API_TOKEN"] + "|" + os.environ["EPOCHS"] + "|" + os.environ["LR"])
print("token length", len(os.environ["API_TOKEN"]), flush=True)
"""


def test_a_secret_reaches_the_script_and_nothing_else(
    cloud: MachineSimulator, project: Path, tmp_path: Path, isolated_env: Path
) -> None:
    (project / "uses_secret.py").write_text(SCRIPT)
    env_file = tmp_path / "job.env"
    env_file.write_text("# comment\nexport LR='0.1'\nEPOCHS=1\n")
    out = tmp_path / "out"
    result = run_cli(
        "workflow", "train", "uses_secret.py", "--project-dir", str(project), "--instance-type",
        "t3.micro", "--poll-interval", "0.3s", "--output-dir", str(out), "--env-file", str(env_file),
        "--env", "EPOCHS=3", "--secret", "API_TOKEN", "-o", "json",
        cwd=project, env={"API_TOKEN": SECRET}, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["job"]
    assert (out / "seen.txt").read_text() == f"{SECRET}|3|0.1"  # the script saw them
    outputs = [result.stdout, result.stderr]
    outputs += [run_cli(*cmd).stdout for cmd in (
        ("logs", job["id"]), ("jobs", "show", job["id"], "-o", "json"), ("events", "--job", job["id"]),
    )]  # fmt: skip
    ssm = boto3.client("ssm", region_name="us-east-1")
    outputs.append(json.dumps(ssm.list_commands()["Commands"], default=str))
    for path in isolated_env.rglob("*"):
        if path.is_file():
            outputs.append(path.read_bytes().decode("latin-1"))  # the ledger's bytes, WAL included
    outputs.append(next(iter(cloud.machines.values())).agent_logs())
    assert not [text for text in outputs if SECRET in text]
    shown = run_cli("jobs", "show", job["id"]).stdout  # the names, not the values
    assert "API_TOKEN (secret)" in shown and "EPOCHS" in shown and "deps auto" in shown
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="runs").get("Contents", [])]
    assert not [k for k in keys if k.endswith("control/env.json")]  # deleted when the job ended


def test_a_missing_secret_is_refused_before_anything_is_created(aws: str, project: Path) -> None:
    result = run_cli(
        "workflow", "train", "train.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--secret", "NOT_SET_ANYWHERE", cwd=project, timeout=60,
    )  # fmt: skip
    assert result.returncode == 65, result.stderr
    assert "--secret NOT_SET_ANYWHERE" in result.stderr
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert not [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"]  # fmt: skip
