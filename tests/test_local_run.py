"""`runctl local` end to end, with real processes and real signals: graceful stop on SIGTERM and
SIGINT with the checkpoint saved and resume from it, the grace period, a second Ctrl-C, exit
codes, max duration, cancel, a runctl killed with SIGKILL, the run contract, and bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl.core.checkpoints import list_checkpoints, step_of
from runctl.core.ledger import LEDGER_FILE, Job, Ledger
from runctl.core.shutdown import pid_alive
from tests.conftest import EXAMPLES, REPO, run_cli

SCRIPTS = REPO / "tests" / "scripts"
NUMPY_EXAMPLE = EXAMPLES / "train_numpy.py"
DEADLINE_S = 60.0  # generous: a loaded 2-core machine may be slow, a hang still fails


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Background:
    """A `runctl local` running in the background, its output captured in files."""

    def __init__(self, args: list[str], workdir: Path, state_dir: Path, cwd: Path | None = None) -> None:
        self.state_dir = state_dir
        self.out_path = workdir / f"runctl-{id(self)}.out"
        self.err_path = workdir / f"runctl-{id(self)}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runctl", "local", *args], stdout=out, stderr=err, cwd=cwd
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def ledger(self) -> Ledger:
        path = self.state_dir / LEDGER_FILE
        wait_for(path.exists, f"the ledger {path}")
        return Ledger(path)

    def running_job(self) -> Job:
        """Wait until the job is recorded as running (its script started)."""
        with self.ledger() as ledger:

            def running() -> Job | None:
                assert self.proc.poll() is None, f"runctl exited early: {self.stderr}"
                jobs = ledger.list_jobs(states=["running"])
                return jobs[0] if jobs else None

            return wait_for(running, "the job to be running")

    def wait_for_log(self, job: Job, pattern: str) -> re.Match[str]:
        """Wait until the job's log (teed script output) matches ``pattern``."""
        log = Path(job.log_path or "")

        def matched() -> re.Match[str] | None:
            assert self.proc.poll() is None, f"runctl exited early: {self.stderr}"
            return re.search(pattern, log.read_text(errors="replace")) if log.exists() else None

        return wait_for(matched, f"{pattern!r} in {log}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE_S) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def background(tmp_path: Path, isolated_env: Path) -> Iterator[Callable[..., Background]]:
    """Start `runctl local ARGS` in the background; on teardown nothing it started survives."""
    started: list[Background] = []

    def start(*args: str, cwd: Path | None = None) -> Background:
        bg = Background(list(args), tmp_path, isolated_env, cwd=cwd)
        started.append(bg)
        return bg

    yield start
    for bg in started:
        if bg.proc.poll() is None:
            bg.proc.kill()
            bg.proc.wait()
    if (isolated_env / LEDGER_FILE).exists():
        from runctl.workflows.local import reconcile_local_jobs

        with Ledger(isolated_env / LEDGER_FILE) as ledger:
            reconcile_local_jobs(ledger)  # stops any training process a killed runctl left


def ledger_at(state_dir: Path) -> Ledger:
    return Ledger(state_dir / LEDGER_FILE)


def child_pid(ledger: Ledger, job: Job) -> int:
    """The training process of a local job, from its ledger resource (``<pid>@<host>``)."""
    resources = ledger.list_resources(job_id=job.id)
    assert len(resources) == 1 and resources[0].kind == "process"
    return int(str(resources[0].cloud_id).partition("@")[0])


def stopped_step(log_text: str) -> int:
    match = re.search(r"stopped at step (\d+)", log_text)
    assert match, log_text
    return int(match.group(1))


# -- graceful stop and resume ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_mid_run_saves_checkpoint_and_next_run_resumes(
    background: Callable[..., Background], isolated_env: Path, sig: signal.Signals, code: int
) -> None:
    bg = background(
        "--name", "sig", "--grace-period", "30s", str(NUMPY_EXAMPLE),
        "--", "--steps", "100000", "--sleep", "0.02", "--save-every", "25",
    )  # fmt: skip
    job = bg.running_job()
    bg.wait_for_log(job, r"step=20\b")  # well inside its training loop
    bg.signal(sig)
    assert bg.wait() == code, bg.stderr

    with ledger_at(isolated_env) as ledger:
        job = ledger.get_job(job.id)
        assert job.state == "interrupted"
        assert job.exit_code == code
        assert f"runctl received {sig.name}" in (job.detail or "")
        step = stopped_step(Path(job.log_path or "").read_text())
        assert job.last_checkpoint and Path(job.last_checkpoint).is_file()
        # saved at the step it stopped: nothing lost, not even the steps since the last periodic save
        assert step_of(Path(job.last_checkpoint).name) == step
        assert not pid_alive(child_pid(ledger, job))
    assert f"received {sig.name}" in bg.stderr
    assert "step=20" in bg.stdout  # the script's output was teed to the terminal

    resumed = run_cli(
        "local", "--resume", "--name", "sig", str(NUMPY_EXAMPLE), "--", "--steps", str(step + 15)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {step}\n" in resumed.stdout
    assert f"done: step={step + 15} " in resumed.stdout
    with ledger_at(isolated_env) as ledger:
        second = ledger.list_jobs(name="sig")[0]
        assert second.id != job.id
        assert (second.state, second.attempt, second.exit_code) == ("succeeded", 2, 0)
        assert second.resume_from == job.last_checkpoint
        assert any(e.kind == "job.resume" for e in ledger.events(job_id=second.id))
    assert f"resumed from {job.last_checkpoint}" in resumed.stderr


def test_script_ignoring_sigterm_is_killed_after_the_grace_period(
    background: Callable[..., Background], isolated_env: Path
) -> None:
    bg = background("--grace-period", "1s", str(SCRIPTS / "ignore_term.py"))
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    with ledger_at(isolated_env) as ledger:
        pid = child_pid(ledger, job)
    bg.signal(signal.SIGTERM)
    assert bg.wait() == 143
    with ledger_at(isolated_env) as ledger:
        job = ledger.get_job(job.id)
    assert job.state == "interrupted"
    assert "1s grace period" in (job.detail or "") and "SIGKILL" in (job.detail or "")
    assert "grace period" in bg.stderr and "SIGKILL" in bg.stderr
    assert not pid_alive(pid)


def test_second_ctrl_c_kills_at_once_and_says_so(
    background: Callable[..., Background], isolated_env: Path
) -> None:
    bg = background("--grace-period", "600s", str(SCRIPTS / "ignore_term.py"))
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    bg.signal(signal.SIGINT)
    wait_for(lambda: "received SIGINT" in bg.stderr, "runctl to acknowledge the first Ctrl-C")
    assert bg.proc.poll() is None  # still waiting for the script to save
    bg.signal(signal.SIGINT)
    assert bg.wait() == 130  # far sooner than the 600 s grace period
    assert "second SIGINT: killed at once" in bg.stderr
    with ledger_at(isolated_env) as ledger:
        job = ledger.get_job(job.id)
        assert job.state == "interrupted" and job.exit_code == 130
        assert "second SIGINT: killed at once" in (job.detail or "")
        assert not pid_alive(child_pid(ledger, job))


# -- exit codes, max duration ------------------------------------------------------------------


@pytest.mark.parametrize(("code", "state"), [(0, "succeeded"), (1, "failed"), (3, "failed"), (42, "failed")])
def test_exit_code_passes_through(isolated_env: Path, code: int, state: str) -> None:
    result = run_cli("local", str(SCRIPTS / "exit_with.py"), "--", str(code))
    assert result.returncode == code, result.stderr
    assert "about to exit" in result.stdout and "a line on stderr" in result.stdout  # merged, teed
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
        assert (job.state, job.exit_code, job.name) == (state, code, "exit_with")
        assert job.args == [str(code)]
        assert job.ended_at and job.started_at and job.ended_at >= job.started_at
        (resource,) = ledger.list_resources(job_id=job.id)
        assert resource.state == "terminated"
        assert all(u.ended_at is not None for u in ledger.usage(job_id=job.id))
        log = Path(job.log_path or "").read_text()
    assert "about to exit" in log and "a line on stderr" in log
    assert (f"exit code {code}" in (job.detail or "")) == (code != 0)
    assert f"job {job.id} (exit_with) {state}" in result.stderr


def test_script_killed_by_a_signal_fails_with_128_plus_signal(tmp_path: Path, isolated_env: Path) -> None:
    script = tmp_path / "suicide.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = run_cli("local", str(script))
    assert result.returncode == 137
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert (job.state, job.exit_code) == ("failed", 137)
    assert "killed by SIGKILL" in (job.detail or "")


def test_max_duration_times_out_with_124(isolated_env: Path) -> None:
    result = run_cli(
        "local", "--max-duration", "2s", "--grace-period", "20s",
        str(SCRIPTS / "cooperative.py"), "--", "100000", "1000", "0.01",
    )  # fmt: skip
    assert result.returncode == 124, result.stderr
    assert "max duration 2s reached" in result.stderr
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert (job.state, job.exit_code) == ("timed_out", 124)
    assert "max duration reached" in (job.detail or "")


def test_max_duration_from_config(tmp_path: Path, isolated_env: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('[local]\nmax_duration = "1s"\ngrace_period = "1s"\n')
    result = run_cli("local", str(SCRIPTS / "ignore_term.py"), cwd=tmp_path)
    assert result.returncode == 124
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert job.state == "timed_out"
    assert "grace period" in (job.detail or "")  # it ignored SIGTERM too


# -- cancel, and a runctl that dies --------------------------------------------------------------


def test_jobs_cancel_stops_gracefully_and_keeps_the_checkpoint(
    background: Callable[..., Background], isolated_env: Path
) -> None:
    bg = background("--name", "cancelme", str(SCRIPTS / "cooperative.py"), "--", "100000", "1000", "0.01")
    job = bg.running_job()
    bg.wait_for_log(job, r"step=\d+")
    result = run_cli("jobs", "cancel", job.id[:6])  # a unique prefix is enough
    assert result.returncode == 0, result.stderr
    assert f"job {job.id}: cancelled" in result.stderr
    assert bg.wait() == 143
    with ledger_at(isolated_env) as ledger:
        job = ledger.get_job(job.id)
    assert job.state == "cancelled" and job.cancel_requested
    assert "cancelled by the user" in (job.detail or "")
    step = stopped_step(Path(job.log_path or "").read_text())
    assert job.last_checkpoint and step_of(Path(job.last_checkpoint).name) == step
    assert Path(job.last_checkpoint).is_file()

    again = run_cli("jobs", "cancel", job.id)
    assert again.returncode == 65 and "already ended (cancelled)" in again.stderr
    missing = run_cli("jobs", "cancel", "j-nothere")
    assert missing.returncode == 66


def test_cancel_a_job_whose_runner_dies_before_it_supervises(isolated_env: Path) -> None:
    """A runctl that has recorded the job but not yet taken over SIGTERM dies of it: cancel must
    see that and record the job itself, not wait for an outcome that never comes."""
    runner = subprocess.Popen(["sleep", "300"])  # stands in for that runctl: SIGTERM kills it
    try:
        isolated_env.mkdir(parents=True)
        with ledger_at(isolated_env) as ledger:
            job = ledger.create_job(name="early", provider="local", script="x.py", runner_pid=runner.pid)
        result = run_cli("jobs", "cancel", job.id, timeout=50)  # the old wait was 60 s
        assert result.returncode == 0, result.stderr
        assert runner.wait(timeout=10) == -signal.SIGTERM
        with ledger_at(isolated_env) as ledger:
            job = ledger.get_job(job.id)
        assert job.state == "cancelled" and job.cancel_requested
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_cancel_a_job_whose_runner_is_already_gone(isolated_env: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    isolated_env.mkdir(parents=True)
    with ledger_at(isolated_env) as ledger:
        job = ledger.create_job(name="gone", provider="local", script="x.py", runner_pid=gone.pid)
    result = run_cli("jobs", "cancel", job.id)
    assert result.returncode == 0
    with ledger_at(isolated_env) as ledger:
        job = ledger.get_job(job.id)
    assert job.state == "cancelled" and "was gone" in (job.detail or "")


def test_runctl_killed_with_sigkill_is_marked_lost_and_its_orphan_stopped(
    background: Callable[..., Background], isolated_env: Path
) -> None:
    bg = background("--name", "orphan", str(SCRIPTS / "quiet_sleeper.py"))
    job = bg.running_job()
    bg.wait_for_log(job, "ready")
    with ledger_at(isolated_env) as ledger:
        pid = child_pid(ledger, job)
    bg.proc.kill()
    bg.wait()
    time.sleep(0.3)
    assert pid_alive(pid), "the script should outlive a runctl killed with SIGKILL"

    result = run_cli("jobs", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert f"job {job.id} marked lost" in result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows[job.id]["state"] == "lost"
    wait_for(lambda: not pid_alive(pid), "the orphan to be stopped in the background")
    with ledger_at(isolated_env) as ledger:
        wait_for(lambda: ledger.list_resources(job_id=job.id)[0].state == "terminated", "its row")
        assert all(u.ended_at is not None for u in ledger.usage(job_id=job.id))
    # a second look finds nothing more to do
    assert "marked lost" not in run_cli("jobs", "list").stderr


def test_crashed_run_resumes_from_its_last_periodic_checkpoint(
    background: Callable[..., Background], isolated_env: Path
) -> None:
    save_every = 20
    bg = background(
        "--name", "crash", str(SCRIPTS / "cooperative.py"), "--", "100000", str(save_every), "0.01"
    )
    job = bg.running_job()
    bg.wait_for_log(job, r"step=50\b")
    bg.proc.kill()  # runctl dies: no graceful stop, no final save
    bg.wait()
    last_seen = max(int(s) for s in re.findall(r"step=(\d+)", Path(job.log_path or "").read_text()))
    assert run_cli("jobs", "list").returncode == 0  # marks it lost, stops its script
    with ledger_at(isolated_env) as ledger:
        lost = ledger.get_job(job.id)
    assert lost.state == "lost" and lost.last_checkpoint
    saved = step_of(Path(lost.last_checkpoint).name)
    assert saved is not None and saved % save_every == 0
    assert saved >= last_seen - save_every  # at most one save interval lost

    resumed = run_cli("local", "--name", "crash", str(SCRIPTS / "cooperative.py"), "--", str(saved + 5))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {saved}\n" in resumed.stdout
    assert f"done step={saved + 5}" in resumed.stdout


# -- the run contract, resume rules ------------------------------------------------------------


def script_env(result_stdout: str) -> dict[str, Any]:
    line = next(line for line in result_stdout.splitlines() if line.startswith("ENV "))
    return json.loads(line[4:])


def test_run_contract_environment(isolated_env: Path) -> None:
    result = run_cli("local", str(SCRIPTS / "show_env.py"))
    assert result.returncode == 0, result.stderr
    env = script_env(result.stdout)
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert env["RUNCTL_JOB_ID"] == job.id
    assert env["RUNCTL_CHECKPOINT_DIR"] == job.checkpoint_dir and env["checkpoint_dir_is_dir"]
    assert env["RUNCTL_RESUME_FROM"] is None
    assert env["RUNCTL_ATTEMPT"] == "1"
    assert env["RUNCTL_KEEP_LAST_N"] is None
    assert job.checkpoint_dir == str(isolated_env / "checkpoints" / job.id)  # one directory per job


def test_resume_from_a_failed_run_and_no_resume(isolated_env: Path) -> None:
    failed = run_cli("local", "--name", "r", str(SCRIPTS / "save_steps.py"), "--", "10,20", "2")
    assert failed.returncode == 2
    with ledger_at(isolated_env) as ledger:
        first = ledger.list_jobs(name="r")[0]
    assert first.state == "failed" and first.last_checkpoint
    assert first.last_checkpoint.endswith("ckpt-00000020.pkl")

    resumed = run_cli("local", "--name", "r", str(SCRIPTS / "show_env.py"))
    env = script_env(resumed.stdout)
    assert env["RUNCTL_RESUME_FROM"] == first.last_checkpoint
    assert env["RUNCTL_ATTEMPT"] == "2"

    fresh = run_cli("local", "--name", "r", "--no-resume", str(SCRIPTS / "show_env.py"))
    assert script_env(fresh.stdout)["RUNCTL_RESUME_FROM"] is None
    # the last run of "r" succeeded: the next one starts fresh too
    after_success = run_cli("local", "--name", "r", str(SCRIPTS / "show_env.py"))
    assert script_env(after_success.stdout)["RUNCTL_RESUME_FROM"] is None


def test_a_resumed_run_that_saves_nothing_passes_the_same_checkpoint_on(isolated_env: Path) -> None:
    assert run_cli("local", "--name", "p", str(SCRIPTS / "save_steps.py"), "--", "5", "1").returncode == 1
    assert run_cli("local", "--name", "p", str(SCRIPTS / "exit_with.py"), "--", "1").returncode == 1
    third = run_cli("local", "--name", "p", str(SCRIPTS / "save_steps.py"), "--", "6")
    assert "resumed from step 5" in third.stdout


def test_checkpoint_dir_option_and_keep_last_n_from_config(tmp_path: Path, isolated_env: Path) -> None:
    (tmp_path / ".runctl.toml").write_text("[checkpoint]\nkeep_last_n = 2\n")
    chosen = tmp_path / "my-ckpts"
    result = run_cli(
        "local", "--checkpoint-dir", str(chosen), str(SCRIPTS / "save_steps.py"), "--", "10,20,30,40",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [c.step for c in list_checkpoints(chosen)] == [30, 40]
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert job.checkpoint_dir == str(chosen.resolve())
    assert job.last_checkpoint == str(chosen.resolve() / "ckpt-00000040.pkl")
    assert f"last checkpoint: {job.last_checkpoint}" in result.stderr


def test_output_json_keeps_stdout_machine_readable(isolated_env: Path) -> None:
    result = run_cli("local", "-o", "json", str(SCRIPTS / "exit_with.py"), "--", "3")
    assert result.returncode == 3
    data = json.loads(result.stdout)  # only the JSON document on stdout
    assert data["exit_code"] == 3 and data["job"]["state"] == "failed"
    assert "about to exit" in result.stderr  # the script's output went to stderr


def test_relative_executable_script_runs(tmp_path: Path, isolated_env: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text('#!/bin/sh\necho hello from sh "$@"\n')
    script.chmod(0o755)
    for spelled in ("./hello.sh", "hello.sh"):
        result = run_cli("local", spelled, "--", "x", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "hello from sh x" in result.stdout


def test_executable_that_cannot_be_executed_is_a_clear_error(tmp_path: Path, isolated_env: Path) -> None:
    script = tmp_path / "noshebang.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    result = run_cli("local", str(script))
    assert result.returncode == 65, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "#!" in result.stderr  # the hint says what is missing
    with ledger_at(isolated_env) as ledger:
        (job,) = ledger.list_jobs()
    assert job.state == "failed" and "could not run" in (job.detail or "")


# -- bad input: a clear error, nothing recorded -------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    not_executable = tmp_path / "train.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_executable.chmod(0o644)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    ok = str(SCRIPTS / "exit_with.py")
    return {
        "missing-script": ([str(tmp_path / "nope.py")], 66, "does not exist"),
        "not-executable": ([str(not_executable)], 65, "not executable"),
        "script-is-a-directory": ([str(tmp_path)], 65, "not a file"),
        "checkpoint-dir-is-a-file": (["--checkpoint-dir", str(a_file), ok], 73, "is a file"),
        "bad-grace-period": (["--grace-period", "abc", ok], 64, "--grace-period"),
        "negative-max-duration": (["--max-duration", "-5s", ok], 64, "--max-duration"),
        "invalid-job-name": (["--name", "bad name!", ok], 65, "job name"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing-script", "not-executable", "script-is-a-directory", "checkpoint-dir-is-a-file",
     "bad-grace-period", "negative-max-duration", "invalid-job-name"],
)  # fmt: skip
def test_bad_input_is_one_clear_error_and_records_nothing(
    tmp_path: Path, isolated_env: Path, case: str
) -> None:
    args, code, words = _bad_inputs(tmp_path)[case]
    result = run_cli("local", *args, "--", "0")
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error:") and words in lines[0]
    assert lines[1].startswith("hint:")
    assert "about to exit" not in result.stdout  # the script never ran
    if (isolated_env / LEDGER_FILE).exists():
        with ledger_at(isolated_env) as ledger:
            assert ledger.list_jobs() == []
            assert ledger.list_resources() == []
    assert not (isolated_env / "checkpoints").exists() or not any((isolated_env / "checkpoints").iterdir())
    assert not (isolated_env / "logs").exists() or not any((isolated_env / "logs").iterdir())


def test_script_arguments_without_double_dash_get_a_hint(isolated_env: Path) -> None:
    result = run_cli("local", str(SCRIPTS / "exit_with.py"), "--steps", "3")
    assert result.returncode == 64
    assert "after '--'" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_is_not_leaked_between_runs(isolated_env: Path) -> None:
    stale = {"RUNCTL_RESUME_FROM": "/stale/ckpt.pkl"}
    result = run_cli("local", str(SCRIPTS / "show_env.py"), env=stale)
    assert result.returncode == 0
    assert script_env(result.stdout)["RUNCTL_RESUME_FROM"] is None  # only runctl decides resume


def test_debug_shows_traceback_for_errors(tmp_path: Path) -> None:
    plain = run_cli("local", str(tmp_path / "missing.py"))
    debug = run_cli("--debug", "local", str(tmp_path / "missing.py"))
    assert plain.returncode == debug.returncode == 66
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr


def test_library_api_runs_a_script_in_process(tmp_path: Path, isolated_env: Path) -> None:
    """The CLI holds no logic: run_local does the same work for a Python caller."""
    import io

    from runctl import LocalRun, run_local
    from runctl.core.config import Config

    echo = io.BytesIO()
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = run_local(
            LocalRun(script=SCRIPTS / "exit_with.py", args=["5"], name="lib"), Config(), ledger, echo=echo
        )
        assert result.exit_code == 5
        assert result.job.state == "failed" and result.job.exit_code == 5
        assert result.outcome.returncode == 5 and not result.outcome.stopped_by_request
    assert b"about to exit" in echo.getvalue()
    assert os.environ.get("RUNCTL_JOB_ID") is None  # the caller's environment is untouched
