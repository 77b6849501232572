"""`runctl monitor --log FILE | --checkpoint DIR [--follow]` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runctl.core.checkpoints import atomic_write
from tests.conftest import run_cli

# A shell's ``&`` makes a background suite ignore SIGINT, its children inherit that, and Python
# then keeps it ignored: the monitor is started with Python's Ctrl-C handler put back.
CTRL_C_ABLE = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'runctl'; runpy.run_module('runctl', run_name='__main__', alter_sys=True)"
)


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CTRL_C_ABLE, "monitor", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip


def read_line(proc: subprocess.Popen[bytes], timeout: float = 20) -> bytes:
    """One line of stdout, or fail (never hang the suite)."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    if not selector.select(timeout):
        proc.kill()
        raise AssertionError(f"no output within {timeout}s: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
    return proc.stdout.readline()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=20)


def test_log_is_printed_byte_for_byte(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step=1 loss=0.7\nstep=2 loss=0.6\n\xff raw bytes\n")
    result = subprocess.run(
        [sys.executable, "-m", "runctl", "monitor", "--log", str(log)], capture_output=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout == log.read_bytes()


def test_bad_arguments() -> None:
    assert run_cli("monitor").returncode == 64
    both = run_cli("monitor", "--log", "a", "--checkpoint", "b")
    assert both.returncode == 64 and "exactly one of --log FILE or --checkpoint DIR" in both.stderr
    missing = run_cli("monitor", "--log", "nope.log")
    assert missing.returncode == 66 and "--follow" in missing.stderr


def test_follow_log_prints_what_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step=1\n")
    proc = start("--log", str(log), "--follow", "--interval", "0.05")
    try:
        assert read_line(proc) == b"step=1\n"
        with log.open("a") as handle:
            handle.write("step=2\n")
        assert read_line(proc) == b"step=2\n"
    finally:
        assert stop(proc) == 130


def test_checkpoint_listing(tmp_path: Path) -> None:
    for step in (100, 20):
        (tmp_path / f"ckpt-{step}.pt").write_bytes(b"x" * step)
    (tmp_path / ".ckpt-300.pt.tmp").write_bytes(b"partial")
    result = run_cli("monitor", "--checkpoint", str(tmp_path), "--output", "json")
    assert result.returncode == 0
    assert [(c["step"], c["size"]) for c in json.loads(result.stdout)] == [(20, 20), (100, 100)]
    assert run_cli("monitor", "--checkpoint", str(tmp_path / "nope")).returncode == 66
    assert run_cli("monitor", "--checkpoint", str(tmp_path / "ckpt-20.pt")).returncode == 65


def test_follow_checkpoints_waits_for_the_dir_and_reports_changes(tmp_path: Path) -> None:
    directory = tmp_path / "ckpts"
    proc = start("--checkpoint", str(directory), "--follow", "--interval", "0.05", "--output", "json")
    try:
        time.sleep(0.5)
        directory.mkdir()
        (directory / ".ckpt-1.pt.tmp").write_bytes(b"in progress")  # never reported
        atomic_write(directory / "ckpt-1.pt", lambda f: f.write(b"one"))
        first = json.loads(read_line(proc))
        assert first["event"] == "checkpoint" and first["step"] == 1 and first["size"] == 3
        atomic_write(directory / "ckpt-2.pt", lambda f: f.write(b"two!"))
        second = json.loads(read_line(proc))
        assert second["step"] == 2 and second["path"].endswith("ckpt-2.pt")
        (directory / "ckpt-1.pt").unlink()
        assert json.loads(read_line(proc)) == {"event": "removed", "path": str(directory / "ckpt-1.pt")}
    finally:
        assert stop(proc) == 130
