"""Orphans and lost work in `runctl local`, with real processes, signals and SIGKILLed runners:
a script never runs untracked (the row is written first, the child waits behind a gate), an
orphan is stopped with its job's own grace period without blocking `jobs list`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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
    with Ledger.open_default() as ledger:
        (job,) = ledger.list_jobs()
        (row,) = ledger.list_resources(job_id=job.id)  # on record at every step
    tag = f"RUNCTL_JOB_ID={job.id}"
    wait_for(lambda: not tagged_pids(tag), "the gated child to exit")
    assert not marker.exists()  # the script never ran: nothing ran untracked

    listed = run_cli("jobs", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"]: r["state"] for r in json.loads(listed.stdout)}[job.id] == "lost"
    with Ledger.open_default() as ledger:
        wait_for(lambda: ledger.get_resource(row.id).is_gone, "the row to be resolved")
    assert not tagged_pids(tag)


def test_a_command_that_cannot_be_executed_is_reported_by_the_gate(tmp_path: Path) -> None:
    from runctl.core.shutdown import StartError, Supervisor

    with pytest.raises(StartError) as caught:
        Supervisor([str(tmp_path / "missing")]).run()
    assert caught.value.filename == str(tmp_path / "missing")


# -- two runs of one name at once ---------------------------------------------------------------

#: Fails (exit 3) on its first attempt after saving a checkpoint; succeeds when resumed.
RESUMABLE = """
import os, sys
from runctl import Checkpointer
ckpt = Checkpointer()
resumed = ckpt.load() is not None
ckpt.save({"attempt": os.environ["RUNCTL_ATTEMPT"]}, int(os.environ["RUNCTL_ATTEMPT"]))
sys.exit(0 if resumed else 3)
"""
RACE_TRIALS = 20


def test_two_runs_of_one_name_at_once_never_resume_the_same_checkpoint(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs find the resume point, wait for each other (a barrier: the worst interleaving),
    then both try to start attempt 2: one wins, the other is refused naming the winner."""
    from concurrent.futures import ThreadPoolExecutor

    import runctl.workflows.local as local
    from runctl.core.config import Config
    from runctl.core.errors import RunctlError

    script = tmp_path / "train.py"
    script.write_text(RESUMABLE)
    config = Config()
    find = local.find_resume_point
    barrier = threading.Barrier(2)

    def found_together(ledger: Ledger, name: str) -> object:
        found = find(ledger, name)
        barrier.wait(timeout=60)
        return found

    def run(name: str) -> object:
        with Ledger.open_default() as ledger:
            try:
                return local.run_local(local.LocalRun(script=script, name=name), config, ledger)
            except RunctlError as exc:
                return exc

    with Ledger.open_default() as ledger:
        for trial in range(RACE_TRIALS):
            first = local.run_local(local.LocalRun(script=script, name=f"race{trial}"), config, ledger)
            assert first.exit_code == 3
    monkeypatch.setattr(local, "find_resume_point", found_together)
    with ThreadPoolExecutor(2) as pool:
        for trial in range(RACE_TRIALS):
            results = list(pool.map(run, [f"race{trial}"] * 2))
            won = [r for r in results if isinstance(r, local.LocalResult)]
            refused = [r for r in results if isinstance(r, RunctlError)]
            assert len(won) == 1 and len(refused) == 1, results
            assert won[0].job.attempt == 2 and won[0].exit_code == 0
            assert won[0].job.id in str(refused[0]) and refused[0].exit_code == 65
    with Ledger.open_default() as ledger:
        attempts = [job.attempt for job in ledger.list_jobs()]
    assert sorted(attempts) == [1] * RACE_TRIALS + [2] * RACE_TRIALS  # no attempt 2 twice


# -- the whole process tree -----------------------------------------------------------------------

#: Starts two daemons (double fork + setsid), one of which also clears its environment (so only
#: the subreaper or the cgroup can find it), writes their pids to argv[1], then exits 0 (argv[2]
#: "exit") or prints "ready" and waits to be stopped.
DAEMONIZE = """
import os, sys, time
pids, mode = sys.argv[1], sys.argv[2]
open(pids, "w").close()
def daemon(clear_env):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pids, "a") as out:
                out.write(f"{os.getpid()}\\n")
            if clear_env:
                os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)"], {})
            time.sleep(300)
        os._exit(0)
    os.wait()
daemon(False)
daemon(True)
while len(open(pids).read().split()) < 2:
    time.sleep(0.01)
if mode == "exit":
    sys.exit(0)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def daemon_pids(path: Path) -> list[int]:
    pids = [int(p) for p in path.read_text().split()]
    assert len(pids) == 2
    return pids


@pytest.fixture
def daemonize(tmp_path: Path) -> Path:
    script = tmp_path / "daemonize.py"
    script.write_text(DAEMONIZE)
    return script


def test_daemons_of_a_successful_job_are_gone(daemonize: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    result = run_cli("local", str(daemonize), "--", str(pids), "exit")
    assert result.returncode == 0, result.stderr
    for pid in daemon_pids(pids):
        assert not pid_alive(pid), f"daemon {pid} outlived its job"


def test_daemons_of_a_cancelled_job_are_gone(
    background: Callable[..., Background], daemonize: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    bg = background(str(daemonize), "--", str(pids), "wait")
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    assert all(pid_alive(pid) for pid in daemon_pids(pids))
    cancelled = run_cli("jobs", "cancel", job.id)
    assert cancelled.returncode == 0, cancelled.stderr
    bg.wait()
    for pid in daemon_pids(pids):
        assert not pid_alive(pid), f"daemon {pid} outlived its cancelled job"


@pytest.fixture
def cgroup_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private cgroup2 mount (root only) with a directory runctl may use as ``cgroup_root``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a cgroup2 hierarchy needs root")
    mount = tmp_path / "cgroup2"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "cgroup2", "none", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount cgroup2 here: {done.stderr.strip()}")
    root = mount / f"runctl-tests-{os.getpid()}-{tmp_path.name}"
    root.mkdir()
    monkeypatch.setenv("RUNCTL_LOCAL__CGROUP_ROOT", str(root))
    try:
        yield root
    finally:
        for leftover in sorted(root.glob("*/"), reverse=True):
            if (leftover / "cgroup.kill").exists():
                (leftover / "cgroup.kill").write_text("1")
            wait_for(lambda leftover=leftover: _rmdir(leftover), f"{leftover} removed", timeout=10)
        root.rmdir()
        subprocess.run(["umount", str(mount)], check=True)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def test_cgroup_path_contains_the_tree_even_after_runctl_died(
    background: Callable[..., Background], daemonize: Path, cgroup_root: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    bg = background(str(daemonize), "--", str(pids), "wait")
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    cgroup = cgroup_root / f"runctl-{job.id}"
    inside = {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
    assert set(daemon_pids(pids)) <= inside  # setsid did not take them out
    bg.proc.kill()  # no runctl, no subreaper: the env-less daemon is found only by its cgroup
    bg.wait()
    assert run_cli("jobs", "list").returncode == 0
    for pid in daemon_pids(pids):
        wait_for(lambda pid=pid: not pid_alive(pid), f"daemon {pid} to be stopped")
    wait_for(lambda: not cgroup.exists(), f"{cgroup} to be removed")


def test_cgroup_path_after_success(daemonize: Path, cgroup_root: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    result = run_cli("local", str(daemonize), "--", str(pids), "exit")
    assert result.returncode == 0, result.stderr
    for pid in daemon_pids(pids):
        assert not pid_alive(pid)
    assert not [p for p in cgroup_root.iterdir() if p.is_dir()]  # its cgroup was removed


def test_cgroup_root_that_is_not_a_cgroup_is_a_config_error(tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('never')\n")
    result = run_cli("local", str(script), env={"RUNCTL_LOCAL__CGROUP_ROOT": str(tmp_path)})
    assert result.returncode == 78, result.stderr
    assert "cgroup_root" in result.stderr and "not a cgroup v2 directory" in result.stderr
    assert "never" not in result.stdout
    assert run_cli("jobs", "list", "-o", "json").stdout == "[]\n"  # nothing recorded


def test_a_program_embedding_runctl_keeps_its_own_children(daemonize: Path, tmp_path: Path) -> None:
    """The subreaper net takes the script's daemons, never a child the host program started
    meanwhile (its own session), nor steals that child's exit status."""
    from runctl.core.shutdown import Supervisor

    own: list[subprocess.Popen[bytes]] = []
    pids = tmp_path / "pids"
    supervisor = Supervisor(
        [sys.executable, str(daemonize), str(pids), "exit"],
        on_start=lambda _pid: own.append(subprocess.Popen(["sleep", "60"])),
    )
    assert supervisor.run().returncode == 0
    assert not any(pid_alive(pid) for pid in daemon_pids(pids))  # no tag given: subreaper only
    (mine,) = own
    assert mine.poll() is None  # alive, and not reaped behind the host's back
    mine.kill()
    assert mine.wait(timeout=10) == -signal.SIGKILL
