"""The user's environment on a remote machine: ``--setup`` (once per machine, output in the job
log, failure → failed_setup and the script never runs) and ``--python`` (a prepared interpreter)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.machine_sim import MachineSimulator

SCRIPT = "import sys\nprint('python', '%d.%d' % sys.version_info[:2], sys.executable, flush=True)\n"


def train(project: Path, *options: str) -> dict:
    (project / "which.py").write_text(SCRIPT)
    result = run_cli(
        "workflow", "train", "which.py", "--project-dir", str(project), "--instance-type", "t3.micro",
        "--poll-interval", "0.3s", "-o", "json", *options, cwd=project, timeout=240,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["job"]


def test_setup_runs_before_the_script_with_its_output_in_the_job_log(
    cloud: MachineSimulator, project: Path
) -> None:
    job = train(project, "--setup", "echo preparing the env; echo ready > setup-done.txt")
    assert job["state"] == "succeeded", job
    log = run_cli("logs", job["id"]).stdout
    assert "preparing the env" in log and log.index("preparing the env") < log.index("python ")
    shown = json.loads(run_cli("jobs", "show", job["id"], "-o", "json").stdout)
    timings = shown["remote_status"]["timings"]  # each part of the start-up, apart
    assert {"bootstrap_s", "setup_s", "first_output_s"} <= set(timings)
    kinds = [e["kind"] for e in shown["events"]]
    assert {"job.bootstrap", "job.setup", "job.first_output"} <= set(kinds)
    assert kinds.count("job.setup") == 1
    table = run_cli("jobs", "show", job["id"]).stdout
    assert "environment setup (--setup)" in table


def test_a_failing_setup_is_failed_setup_and_the_script_never_runs(
    cloud: MachineSimulator, project: Path
) -> None:
    job = train(project, "--setup", "echo cannot find torch; exit 3")
    assert job["state"] == "failed_setup", job
    assert "setup exited with 3" in job["detail"] and "cannot find torch" in job["detail"]
    assert "python " not in run_cli("logs", job["id"]).stdout


def test_python_names_the_scripts_interpreter(cloud: MachineSimulator, project: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared-env"
    prepared.mkdir()
    interpreter = prepared / "python"
    interpreter.symlink_to(sys.executable)
    job = train(project, "--python", str(interpreter))
    assert job["state"] == "succeeded", job
    assert f"python {sys.version_info.major}.{sys.version_info.minor} {interpreter}" in run_cli(
        "logs", job["id"]
    ).stdout


def tiny_wheel(directory: Path) -> Path:
    """A one-module wheel ``tinydep`` (not installed anywhere), for a local package index."""
    import base64
    import hashlib
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "tinydep/__init__.py": "VALUE = 'tinydep works'\n",
        "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    wheel = directory / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(text)}")
        record.append("tinydep-1.0.dist-info/RECORD,,")
        archive.writestr("tinydep-1.0.dist-info/RECORD", "\n".join(record))
    return wheel


DEPS_SCRIPT = """
import sys
import tinydep
from runctl import Checkpointer
print(tinydep.VALUE, "in", sys.prefix, flush=True)
"""


def test_requirements_are_installed_into_a_cached_project_env(
    cloud: MachineSimulator, project: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    tiny_wheel(index)
    (project / "requirements.txt").write_text("tinydep==1.0\n")
    (project / "uses_dep.py").write_text(DEPS_SCRIPT)
    result = run_cli(
        "workflow", "train", "uses_dep.py", "--project-dir", str(project), "--instance-type",
        "t3.micro", "--poll-interval", "0.3s", "-o", "json", "--env", f"PIP_FIND_LINKS={index}",
        "--env", "PIP_NO_INDEX=1", cwd=project, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["job"]
    log = run_cli("logs", job["id"]).stdout
    assert "tinydep works in" in log and ".runctl/envs/" in log  # and runctl's helper imported
    events = json.loads(run_cli("events", "--job", job["id"], "-o", "json").stdout)
    assert [e for e in events if e["kind"] == "job.deps"]


def test_the_project_env_is_built_once_per_machine(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runctl.agent.deps import project_python

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    index = tmp_path / "index"
    tiny_wheel(index)
    (project / "requirements.txt").write_text("tinydep==1.0\n")
    env = {**os.environ, "PIP_FIND_LINKS": str(index), "PIP_NO_INDEX": "1"}
    log = tmp_path / "job.log"
    log.touch()

    def build() -> tuple[str | None, float | None]:
        return project_python(project, project / "train.py", log_path=log, timeout=300.0, env=env)

    python, took = build()
    assert python is not None and took is not None
    again, took_again = build()
    assert again == python and took_again is None
    (project / "requirements.txt").write_text("tinydep==1.0\n# changed\n")
    other, _ = build()
    assert other != python  # a new requirements file, a new env
