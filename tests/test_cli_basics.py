"""The CLI's shape: help, version, usage errors, and the jobs / logs / events / checkpoint /
config commands over real runs, in table and JSON form."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.conftest import REPO, run_cli

SCRIPTS = REPO / "tests" / "scripts"


def only_job(state_dir: Path) -> str:
    with Ledger(state_dir / LEDGER_FILE) as ledger:
        (job,) = ledger.list_jobs()
        return job.id


@pytest.fixture
def finished_job(isolated_env: Path) -> str:
    """A failed job that saved checkpoints at steps 10..50 (the script exits 1 after saving)."""
    result = run_cli("local", "--name", "five", str(SCRIPTS / "save_steps.py"), "--", "10,20,30,40,50", "1")
    assert result.returncode == 1, result.stderr
    return only_job(isolated_env)


def test_help_lists_the_commands_and_version_prints() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("local", "jobs", "logs", "checkpoint", "config", "init"):
        assert command in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"runctl {__import__('runctl').__version__}"


@pytest.mark.parametrize(
    "args", [["no-such-command"], ["jobs", "list", "--bogus"], ["jobs", "list", "--limit", "0"]]
)
def test_usage_errors_exit_64_without_traceback(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 64
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_bare_command_groups_show_help() -> None:
    for args in ([], ["jobs"], ["checkpoint"], ["config"]):
        result = run_cli(*args)
        assert "Usage: runctl" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_jobs_list_and_show(finished_job: str, isolated_env: Path) -> None:
    assert run_cli("local", "--name", "other", str(SCRIPTS / "exit_with.py"), "--", "0").returncode == 0
    rows = json.loads(run_cli("jobs", "list", "-o", "json").stdout)
    assert [r["name"] for r in rows] == ["other", "five"]  # newest first
    assert {"id", "state", "exit_code", "attempt", "cost_usd", "checkpoint_dir"} <= set(rows[0])
    assert [r["id"] for r in json.loads(run_cli("jobs", "list", "--name", "five", "-o", "json").stdout)] == [
        finished_job
    ]
    assert [
        r["name"] for r in json.loads(run_cli("jobs", "list", "--state", "failed", "-o", "json").stdout)
    ] == ["five"]
    assert len(json.loads(run_cli("jobs", "list", "--limit", "1", "-o", "json").stdout)) == 1
    table = run_cli("jobs", "list")
    assert table.returncode == 0
    assert finished_job in table.stdout and "failed" in table.stdout and "succeeded" in table.stdout

    shown = json.loads(run_cli("jobs", "show", finished_job[:5], "-o", "json").stdout)
    assert shown["id"] == finished_job and shown["state"] == "failed" and shown["exit_code"] == 1
    assert shown["last_checkpoint"].endswith("ckpt-00000050.pkl")
    assert [r["kind"] for r in shown["resources"]] == ["process"]
    assert shown["resources"][0]["state"] == "terminated"
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[0] == "job.created" and kinds[-1] == "job.finished"
    text = run_cli("jobs", "show", finished_job)
    assert text.returncode == 0
    assert "exit code 1" in text.stdout and "ckpt-00000050.pkl" in text.stdout

    missing = run_cli("jobs", "show", "j-nothere")
    assert missing.returncode == 66 and "jobs list" in missing.stderr


def test_logs_prints_the_scripts_output(finished_job: str) -> None:
    result = run_cli("logs", finished_job)
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if line.startswith("saved")] == [
        f"saved ckpt-{s:08d}.pkl" for s in (10, 20, 30, 40, 50)
    ]
    followed = run_cli("logs", "--follow", finished_job, timeout=60)  # a finished job: returns at once
    assert followed.returncode == 0 and followed.stdout == result.stdout


def test_logs_follow_streams_a_running_job_until_it_ends(isolated_env: Path, tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as out:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runctl",
                "local",
                str(SCRIPTS / "cooperative.py"),
                "--",
                "60",
                "1000",
                "0.02",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ledger_path = isolated_env / LEDGER_FILE
        job_id = None
        for _ in range(1200):
            if ledger_path.exists():
                with Ledger(ledger_path) as ledger:
                    jobs = ledger.list_jobs()
                if jobs:
                    job_id = jobs[0].id
                    break
            time.sleep(0.05)
        assert job_id, "the job was never recorded"
        followed = run_cli("logs", "-f", job_id, timeout=120)
        assert runner.wait(timeout=60) == 0
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGKILL)
            runner.wait()
    assert followed.returncode == 0
    assert "ready step=0" in followed.stdout
    assert followed.stdout.rstrip().endswith("done step=60")


def test_logs_follow_ends_when_the_jobs_runner_is_gone(isolated_env: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    log = tmp_path / "orphan.log"
    log.write_text("last words\n")
    isolated_env.mkdir(parents=True)
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        job = ledger.create_job(
            name="dead", provider="local", script="x.py", runner_pid=dead.pid, log_path=str(log)
        )
        ledger.update_job(job.id, state="running")
    followed = run_cli("logs", "--follow", job.id, timeout=60)  # must not wait forever
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "last words\n"
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        assert ledger.get_job(job.id).state == "lost"


def test_events_command(finished_job: str) -> None:
    rows = json.loads(run_cli("events", "--job", finished_job, "-o", "json").stdout)
    assert {r["job_id"] for r in rows} == {finished_job}
    assert "job.finished" in [r["kind"] for r in rows]
    assert len(json.loads(run_cli("events", "--limit", "2", "-o", "json").stdout)) == 2
    assert "job.created" in run_cli("events").stdout


def test_checkpoint_list_info_prune(finished_job: str, isolated_env: Path) -> None:
    listed = json.loads(run_cli("checkpoint", "list", finished_job, "-o", "json").stdout)
    assert [c["step"] for c in listed] == [10, 20, 30, 40, 50]
    assert all(c["size"] > 0 for c in listed)
    directory = Path(listed[0]["path"]).parent
    by_dir = json.loads(run_cli("checkpoint", "list", "--dir", str(directory), "-o", "json").stdout)
    assert by_dir == listed
    assert "ckpt-00000050.pkl" in run_cli("checkpoint", "list", finished_job).stdout

    info = json.loads(run_cli("checkpoint", "info", listed[-1]["path"], "-o", "json").stdout)
    assert info["step"] == 50 and info["complete"] is True
    (directory / ".ckpt-00000060.pkl.1.tmp").write_bytes(b"half")
    partial = json.loads(
        run_cli("checkpoint", "info", str(directory / ".ckpt-00000060.pkl.1.tmp"), "-o", "json").stdout
    )
    assert partial["complete"] is False
    assert run_cli("checkpoint", "info", str(directory / "nope.pkl")).returncode == 66

    dry = json.loads(
        run_cli("checkpoint", "prune", finished_job, "--keep-last-n", "2", "--dry-run", "-o", "json").stdout
    )
    assert dry["dry_run"] and [c["step"] for c in dry["removed"]] == [10, 20, 30]
    assert len(list(directory.glob("ckpt-*"))) == 5
    pruned = run_cli("checkpoint", "prune", finished_job, "--keep-last-n", "2")
    assert pruned.returncode == 0 and "removed 3 checkpoint(s)" in pruned.stderr
    assert sorted(p.name for p in directory.glob("ckpt-*")) == ["ckpt-00000040.pkl", "ckpt-00000050.pkl"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["checkpoint", "list"], 64),  # neither JOB nor --dir
        (["checkpoint", "list", "j-x", "--dir", "/tmp"], 64),  # both
        (["checkpoint", "prune", "--dir", "/tmp", "--keep-last-n", "0"], 64),
        (["checkpoint", "list", "j-nothere"], 66),
    ],
)
def test_checkpoint_usage_errors(args: list[str], code: int) -> None:
    result = run_cli(*args)
    assert result.returncode == code
    assert "Traceback" not in result.stderr


def test_checkpoint_dir_that_is_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    result = run_cli("checkpoint", "list", "--dir", str(a_file))
    assert result.returncode == 65 and "is a file" in result.stderr


def test_checkpoint_resume_continues_a_job(finished_job: str, isolated_env: Path) -> None:
    result = run_cli("checkpoint", "resume", finished_job)
    # the same script and arguments: it loads step 50, saves 10..50 again and exits 1 again
    assert result.returncode == 1, result.stderr
    assert "resumed from step 50" in result.stdout
    assert "ckpt-00000050.pkl" in result.stderr
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        newest = ledger.list_jobs()[0]
    assert newest.id != finished_job and newest.name == "five"
    assert newest.resume_from and newest.resume_from.endswith("ckpt-00000050.pkl")


def test_checkpoint_resume_without_a_checkpoint_is_not_found(isolated_env: Path) -> None:
    assert run_cli("local", str(SCRIPTS / "exit_with.py"), "--", "2").returncode == 2
    result = run_cli("checkpoint", "resume", only_job(isolated_env))
    assert result.returncode == 66
    assert "no checkpoint to resume from" in result.stderr and "hint:" in result.stderr


def test_config_path_and_validate(tmp_path: Path, isolated_env: Path) -> None:
    paths = json.loads(run_cli("config", "path", "-o", "json", cwd=tmp_path).stdout)
    assert paths["project"] is None
    assert paths["state_dir"] == str(isolated_env)
    assert paths["user_exists"] is False
    valid = run_cli("config", "validate", cwd=tmp_path)
    assert valid.returncode == 0 and "built-in defaults" in valid.stdout
    shown = run_cli("config", "show", cwd=tmp_path)
    assert shown.returncode == 0
    assert "[local]" in shown.stdout and "grace_period = 30.0" in shown.stdout
