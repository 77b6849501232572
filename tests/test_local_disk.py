"""`runctl local` against a full or read-only disk, and the log size cap: the script is never
stalled by a log that cannot be written, the job ends with a clear error, the ledger's write
failures are clear errors (exit 74) naming its path.

The full disk is a 1 MiB tmpfs mounted as root; where mounting is not possible the runner runs
under a 1 MiB file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) instead, which fails log writes
the same way (EFBIG instead of ENOSPC)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.core.ledger import Ledger
from tests.conftest import CliResult, run_cli

#: Prints 4 MiB (four times the disk) in lines, then "done".
CHATTY = "import sys\nfor i in range(4096):\n    print(f'{i:07d}' + 'x' * 1016)\nprint('done', flush=True)\n"
SMALL_DISK = "1m"


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def full_log_disk(isolated_env: Path) -> Iterator[dict[str, str]]:
    """The job logs' directory on a 1 MiB disk; yields the environment runctl needs for it."""
    logs = isolated_env / "logs"
    if _mount_tmpfs(logs, SMALL_DISK):
        yield {}
        subprocess.run(["umount", "-l", str(logs)], check=True)
    else:  # no mount: the same failure through a 1 MiB file-size limit on the runner
        yield {"RUNCTL_TEST_FSIZE": str(1 << 20)}


def run_limited(*args: str, env: dict[str, str]) -> CliResult:
    """``run_cli``, under RLIMIT_FSIZE when ``env`` asks for it."""
    if "RUNCTL_TEST_FSIZE" not in env:
        return run_cli(*args, env=env, timeout=120)
    limit = int(env["RUNCTL_TEST_FSIZE"])
    code = (
        "import resource, runpy, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "sys.argv = ['runctl', *sys.argv[1:]]\n"
        "runpy.run_module('runctl', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_a_full_disk_does_not_hang_the_job(
    full_log_disk: dict[str, str], tmp_path: Path, isolated_env: Path
) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    result = run_limited("local", str(script), env=full_log_disk)  # a hang fails on the timeout
    assert result.stdout.rstrip().endswith("done"), result.stderr  # all its output still drained
    assert result.returncode == 73, result.stderr
    assert result.stderr.count("could not be written") == 2, result.stderr  # said once, then in the summary
    with Ledger(isolated_env / "ledger.db") as ledger:
        (job,) = ledger.list_jobs()
    assert job.state == "succeeded" and job.exit_code == 73
    assert f"its log {job.log_path} could not be written" in (job.detail or "")
    assert "Traceback" not in result.stderr


@pytest.fixture
def small_state_dir(isolated_env: Path) -> Iterator[Path]:
    if not _mount_tmpfs(isolated_env, SMALL_DISK):
        pytest.skip("filling the ledger's disk needs a tmpfs (mounting needs root)")
    yield isolated_env
    subprocess.run(["umount", "-l", str(isolated_env)], check=True)


def test_a_full_ledger_disk_is_a_clear_error(small_state_dir: Path, tmp_path: Path) -> None:
    assert run_cli("jobs", "list").returncode == 0  # the ledger exists
    with (small_state_dir / "filler").open("wb", buffering=0) as filler:
        try:
            while filler.write(b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: the disk is full
            pass
    script = tmp_path / "ok.py"
    script.write_text("print('ran')\n")
    result = run_cli("local", str(script))
    assert result.returncode == 74, result.stderr
    assert f"ledger {small_state_dir / 'ledger.db'}" in result.stderr and "full" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_read_only_ledger_is_a_clear_error(small_state_dir: Path, tmp_path: Path) -> None:
    assert run_cli("jobs", "list").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_state_dir)], check=True)
    script = tmp_path / "ok.py"
    script.write_text("print('ran')\n")
    result = run_cli("local", str(script))
    assert result.returncode in (73, 74), result.stderr
    assert str(small_state_dir) in result.stderr and "Traceback" not in result.stderr
    assert "ran" not in result.stdout


def test_the_log_is_rotated_at_max_log_size(tmp_path: Path, isolated_env: Path) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    result = run_cli("local", str(script), "-o", "json", env={"RUNCTL_LOCAL__MAX_LOG_SIZE": "256KiB"})
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)["job"]
    log = Path(job["log_path"])
    rotated = log.with_name(log.name + ".1")
    assert 0 < log.stat().st_size <= 256 * 1024 and 0 < rotated.stat().st_size <= 256 * 1024
    assert log.read_text().endswith("done\n")
    shown = run_cli("logs", job["id"])
    assert shown.returncode == 0
    numbers = [int(line[:7]) for line in shown.stdout.splitlines() if line[:7].isdigit()]
    assert numbers == list(range(numbers[0], 4096))  # the newest part, contiguous, oldest first


def test_max_log_size_must_be_a_positive_size(tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('ran')\n")
    for bad in ("0", "lots"):
        result = run_cli("local", str(script), env={"RUNCTL_LOCAL__MAX_LOG_SIZE": bad})
        assert result.returncode == 78 and "max_log_size" in result.stderr, result.stderr


def test_follow_reads_across_a_rotation(tmp_path: Path) -> None:
    from runctl.workflows.jobs import follow_log

    log = tmp_path / "job.log"
    log.write_bytes(b"old part\n")
    ended = False
    follow = follow_log(log, until=lambda: ended, poll=0.01)
    assert next(follow) == b"old part\n"
    log.replace(log.with_name("job.log.1"))  # what max_log_size does
    log.write_bytes(b"new part\n")
    ended = True
    assert b"".join(follow) == b"new part\n"
