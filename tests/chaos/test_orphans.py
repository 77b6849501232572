"""Orphans and lost work on this machine: runctl is killed with SIGKILL at the crash points of
``runctl local`` and at random moments of a run, a script daemonises, a log's disk fills up, two
runs of one name start at once. After each: no process of the job alive that the ledger does
not account for (an orphan), no save lost, no attempt resumed twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.core.checkpoints import latest_checkpoint, step_of
from runctl.core.containment import tagged_pids
from runctl.core.ledger import LEDGER_FILE, Ledger
from runctl.core.shutdown import pid_alive
from runctl.core.testhooks import CRASH_ENV, CRASH_POINTS
from tests.chaos.checks import no_traceback
from tests.conftest import run_cli
from tests.test_local_disk import CHATTY, full_log_disk, run_limited  # noqa: F401  (a fixture)
from tests.test_local_orphans import DAEMONIZE, RESUMABLE, cgroup_root, daemon_pids  # noqa: F401
from tests.test_local_run import wait_for

CRASH_TRIALS = 3  # per crash point
KILL_TRIALS = 8
RACE_TRIALS = 20

#: Saves a checkpoint every 5 steps (one step per 20 ms) and when asked to stop; never prints
#: after "ready" (a dead runctl's pipe must not be what stops it). argv: STEPS.
QUIET_TRAINER = """
import sys, time
from runctl import Checkpointer
ckpt = Checkpointer()
step = (ckpt.load() or {"step": 0})["step"]
print(f"ready {step}", flush=True)
while step < int(sys.argv[1]):
    time.sleep(0.02)
    step += 1
    stop = ckpt.stop_requested
    if step % 5 == 0 or stop:
        ckpt.save({"step": step}, step)
    if stop:
        sys.exit(0)
ckpt.save({"step": step}, step)
print(f"done {step}", flush=True)
"""


def orphans(job_id: str) -> set[int]:
    """Processes of the job still alive once nothing of it should be."""
    return tagged_pids(f"RUNCTL_JOB_ID={job_id}")


def settle(job_id: str) -> set[int]:
    """Let the background stopper finish (every row gone), then count the job's processes."""
    with Ledger.open_default() as ledger:
        wait_for(
            lambda: all(r.is_gone for r in ledger.list_resources(job_id=job_id)),
            "its rows to be resolved",
            90,
        )
    return orphans(job_id)


@pytest.fixture
def trainer(tmp_path: Path) -> Path:
    script = tmp_path / "trainer.py"
    script.write_text(QUIET_TRAINER)
    return script


def test_crash_points_of_runctl_local(tmp_path: Path, figures: dict[str, Any]) -> None:
    """Killed before its script is on record: the script never runs, nothing is left running."""
    ran = 0
    left = 0
    trials = 0
    for point in CRASH_POINTS["local"]:
        for trial in range(CRASH_TRIALS):
            marker = tmp_path / f"ran-{point}-{trial}"
            script = tmp_path / "train.py"
            script.write_text(
                f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(300)\n"
            )
            crashed = run_cli("local", "--name", f"c{trial}", str(script), env={CRASH_ENV: point})
            assert crashed.returncode == -signal.SIGKILL, f"{point}: {crashed.stderr}"
            with Ledger.open_default() as ledger:
                job = ledger.list_jobs(limit=1)[0]
            assert no_traceback(run_cli("jobs", "list")).returncode == 0
            left += len(settle(job.id))
            ran += marker.exists()
            trials += 1
    assert (ran, left) == (0, 0)
    figures.update(trials=trials, scripts_run_untracked=ran, orphans=left)


def test_runctl_killed_at_random_moments(trainer: Path, tmp_path: Path, figures: dict[str, Any]) -> None:
    """SIGKILL at a random moment of a run, then ``jobs list`` and a resume: the orphan is
    stopped with its grace period (it saves), and the resume continues from that save."""
    rng = random.Random(14)
    left = 0
    losses = 0
    for trial in range(KILL_TRIALS):
        name = f"k{trial}"
        out = (tmp_path / f"{name}.out").open("wb")
        runner = subprocess.Popen(
            [sys.executable, "-m", "runctl", "local", "--name", name, str(trainer), "--", "100000"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        with Ledger.open_default() as ledger:
            job = wait_for(lambda name=name: next(iter(ledger.list_jobs(name=name)), None), "the job")
        time.sleep(rng.uniform(0.0, 2.0))  # anywhere: before the script starts, or mid-run
        runner.kill()
        runner.wait()
        out.close()
        assert no_traceback(run_cli("jobs", "list")).returncode == 0
        # at once, while the orphan may still be saving: the resume must wait for that save
        resumed = no_traceback(run_cli("local", "--name", name, str(trainer), "--", "1"))
        assert resumed.returncode == 0, resumed.stderr
        start = int(resumed.stdout.split("ready ", 1)[1].split()[0])
        left += len(settle(job.id))
        saved = latest_checkpoint(Path(job.checkpoint_dir or ""))
        losses += start != (step_of(saved.path.name) if saved else 0)  # resumed from the newest save
    assert (left, losses) == (0, 0)
    figures.update(trials=KILL_TRIALS, orphans=left, data_losses=losses)


@pytest.mark.parametrize("end", ["success", "cancel", "runctl_killed_cgroup"])
def test_a_daemonising_script(
    end: str, tmp_path: Path, figures: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """Two daemons (double fork + setsid; one also clears its environment) outlive neither
    success nor ``jobs cancel`` (subreaper path), nor a runctl killed with SIGKILL when the job
    has its own cgroup (after runctl died only the cgroup can find the one without a tag)."""
    if end.endswith("cgroup"):
        request.getfixturevalue("cgroup_root")
    script = tmp_path / "daemonize.py"
    script.write_text(DAEMONIZE)
    pids = tmp_path / "pids"
    if end == "success":
        assert no_traceback(run_cli("local", str(script), "--", str(pids), "exit")).returncode == 0
    else:
        out = tmp_path / "runner.out"
        with out.open("wb") as log:
            runner = subprocess.Popen(
                [sys.executable, "-m", "runctl", "local", str(script), "--", str(pids), "wait"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            wait_for(lambda: "ready" in out.read_text(), "the daemons")
            with Ledger.open_default() as ledger:
                (job,) = ledger.list_jobs()
            if end == "cancel":
                assert no_traceback(run_cli("jobs", "cancel", job.id)).returncode == 0
                runner.wait(timeout=60)
            else:
                runner.kill()
                runner.wait()
                assert no_traceback(run_cli("jobs", "list")).returncode == 0
                settle(job.id)
    alive = [pid for pid in daemon_pids(pids) if pid_alive(pid)]
    assert alive == []
    figures.update(daemons=2, orphans=len(alive))


def test_a_full_log_disk(full_log_disk: dict[str, str], tmp_path: Path, figures: dict[str, Any]) -> None:  # noqa: F811
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    started = time.monotonic()
    result = run_limited("local", str(script), env=full_log_disk)
    assert result.returncode == 73 and result.stdout.rstrip().endswith("done"), result.stderr
    assert "Traceback" not in result.stderr
    figures.update(
        disk="tmpfs 1 MiB" if not full_log_disk else "RLIMIT_FSIZE 1 MiB",
        output_bytes=4096 * 1024,
        hangs=0,
        exit_code=result.returncode,
        wall_s=round(time.monotonic() - started, 1),
    )


def test_same_name_race(tmp_path: Path, isolated_env: Path, figures: dict[str, Any]) -> None:
    """Two ``runctl local --name X`` released together by a barrier, 20 times: never two jobs of
    one attempt continuing the same job."""
    script = tmp_path / "train.py"
    script.write_text(RESUMABLE.replace("sys.exit(0 if", "import time; time.sleep(1); sys.exit(0 if"))
    refused = 0
    for trial in range(RACE_TRIALS):
        name = f"race{trial}"
        assert run_cli("local", "--name", name, str(script)).returncode == 3
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def start(
            i: int, name: str = name, barrier: threading.Barrier = barrier, results: list = results
        ) -> None:
            barrier.wait(timeout=60)
            results[i] = run_cli("local", "--name", name, str(script))

        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        for result in results:
            no_traceback(result)
            assert result.returncode in (0, 3, 65), result.stderr
            refused += result.returncode == 65
            if result.returncode == 65:
                assert "already being resumed" in result.stderr or "already resumed" in result.stderr
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        jobs = ledger.list_jobs()
    twice = 0
    for trial in range(RACE_TRIALS):
        attempts = [j.attempt for j in jobs if j.name == f"race{trial}"]
        twice += len(attempts) != len(set(attempts))
    assert twice == 0
    figures.update(trials=RACE_TRIALS, refused=refused, same_attempt_twice=twice)
