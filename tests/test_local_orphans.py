"""Orphans and lost work in `runctl local`, with real processes, signals and SIGKILLed runners:
a script never runs untracked (the row is written first, the child waits behind a gate), an
orphan is stopped with its job's own grace period without blocking `jobs list`."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from runctl.core.ledger import Ledger
from runctl.core.shutdown import pid_alive
from runctl.core.testhooks import CRASH_ENV, CRASH_POINTS
from tests import test_local_run
from tests.conftest import run_cli
from tests.test_local_run import Background, child_pid, ledger_at, wait_for

background = test_local_run.background  # the fixture

#: Saves for SAVE_S seconds when asked to stop (SIGTERM), then writes "saved" and exits 0.
SLOW_SAVER = """
import os, pathlib, signal, sys, time
done = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"]) / "saved"
def save(*_):
    time.sleep({save_s})
    done.write_text("ok")
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def test_an_orphan_gets_its_jobs_grace_period_and_jobs_list_does_not_wait(
    background: Callable[..., Background], tmp_path: Path, isolated_env: Path
) -> None:
    script = tmp_path / "slow_saver.py"
    script.write_text(SLOW_SAVER.format(save_s=15))
    bg = background("--name", "slow", "--grace-period", "60s", str(script))
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    with ledger_at(isolated_env) as ledger:
        pid = child_pid(ledger, job)
    bg.proc.kill()  # runctl dies; its script trains on, unseen
    bg.wait()

    listed = run_cli("jobs", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert pid_alive(pid), "jobs list returned only after the orphan was stopped"  # 15 s save
    assert "being stopped in the background" in listed.stderr
    assert {r["id"]: r["state"] for r in json.loads(listed.stdout)}[job.id] == "lost"

    saved = Path(job.checkpoint_dir or "") / "saved"
    wait_for(lambda: not pid_alive(pid), "the orphan to exit", timeout=120)
    assert saved.read_text() == "ok"  # its 15 s save was not cut short by a SIGKILL
    with ledger_at(isolated_env) as ledger:
        wait_for(lambda: ledger.list_resources(job_id=job.id)[0].state == "terminated", "its row")
        events = [e.message for e in ledger.events(job_id=job.id)]
    assert not any("release_failed" in e for e in events), events


def test_a_resume_waits_for_the_orphan_to_finish_saving(
    background: Callable[..., Background], tmp_path: Path, isolated_env: Path
) -> None:
    script = tmp_path / "slow_saver.py"
    script.write_text(SLOW_SAVER.format(save_s=3))
    bg = background("--name", "slow", "--checkpoint-dir", str(tmp_path / "ckpt"), str(script))
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    bg.proc.kill()
    bg.wait()
    assert run_cli("jobs", "list").returncode == 0
    after = tmp_path / "after.py"
    after.write_text("import os\nprint('saved' in os.listdir(os.environ['RUNCTL_CHECKPOINT_DIR']))\n")
    resumed = run_cli("local", "--name", "slow", "--checkpoint-dir", str(tmp_path / "ckpt"), str(after))
    assert resumed.returncode == 0, resumed.stderr
    assert "True" in resumed.stdout, resumed.stderr  # it started only after the save was done


@pytest.mark.parametrize("point", CRASH_POINTS["local"])
def test_runctl_killed_before_its_script_is_on_record_leaves_nothing_running(
    point: str, tmp_path: Path, isolated_env: Path
) -> None:
    from runctl.core.containment import tagged_pids

    marker = tmp_path / "ran"
    script = tmp_path / "train.py"
    script.write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(300)\n"
    )
    crashed = run_cli("local", "--name", "gated", str(script), env={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, f"{point} not reached: {crashed.stderr}"
    with Ledger(isolated_env / "ledger.db") as ledger:
        (job,) = ledger.list_jobs()
        (row,) = ledger.list_resources(job_id=job.id)  # on record at every step
    tag = f"RUNCTL_JOB_ID={job.id}"
    wait_for(lambda: not tagged_pids(tag), "the gated child to exit")
    assert not marker.exists()  # the script never ran: nothing ran untracked

    listed = run_cli("jobs", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"]: r["state"] for r in json.loads(listed.stdout)}[job.id] == "lost"
    with Ledger(isolated_env / "ledger.db") as ledger:
        wait_for(lambda: ledger.get_resource(row.id).is_gone, "the row to be resolved")
    assert not tagged_pids(tag)


def test_a_command_that_cannot_be_executed_is_reported_by_the_gate(tmp_path: Path) -> None:
    from runctl.core.shutdown import StartError, Supervisor

    with pytest.raises(StartError) as caught:
        Supervisor([str(tmp_path / "missing")]).run()
    assert caught.value.filename == str(tmp_path / "missing")
