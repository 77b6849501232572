"""The agent's hang watchdog (:mod:`runctl.agent.watchdog`), with the real agent, real
subprocesses and signals, local storage, and a fake ``nvidia-smi`` on ``PATH`` whose GPU
utilisation the test sets (the agent's fallback when NVML is not installed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from runctl.agent.runner import AgentOptions, run_agent
from runctl.agent.sync import read_log
from runctl.core import metrics
from runctl.storage.local import LocalStorage
from tests.test_agent import bundle

HANG_TIMEOUT, POLL = 1.5, 0.25

STUCK_AFTER_3_STEPS = """
import sys, time
from runctl import Checkpointer

ckpt = Checkpointer()
state = ckpt.load()
if state:
    print(f"resumed from step {state['step']}", flush=True)
    sys.exit(0)
for step in (1, 2, 3):
    print(f"step {step}", flush=True)
    ckpt.save({"step": step}, step)
time.sleep(3600)  # stuck: no line, no checkpoint (SIGTERM is only noted: SIGKILL ends it)
"""

QUIET_FOR = """
import sys, time
from runctl import Checkpointer

ckpt, mode = Checkpointer(), sys.argv[1]
for _ in range(20):  # 5 s, over three hang timeouts
    if mode == "prints":
        print("still here", flush=True)
    elif mode == "heartbeat":
        ckpt.progress()
    time.sleep(0.25)
print("done", flush=True)
"""


@pytest.fixture
def gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``nvidia-smi`` reporting two GPUs at the utilisation written in the returned file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    util = tmp_path / "gpu-util"
    util.write_text("0\n0\n")
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\ncat "{util}"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return util


def agent(tmp_path: Path, storage: LocalStorage, *args: str, attempt: int = 1):
    options = AgentOptions(
        job_id="j-hang",
        script="train.py",
        args=list(args),
        attempt=attempt,
        workdir=tmp_path / f"machine-{attempt}",
        heartbeat=POLL,
        grace_period=1.0,
        hang_timeout=HANG_TIMEOUT,
    )
    return run_agent(options, storage)


def store(tmp_path: Path, script: str) -> LocalStorage:
    storage = LocalStorage(tmp_path / "bucket" / "jobs" / "j-hang")
    bundle(storage, {"train.py": script.encode()})
    return storage


def test_a_silent_script_at_zero_gpu_is_hung_then_resumes_from_its_checkpoint(
    tmp_path: Path, gpu: Path
) -> None:
    storage = store(tmp_path, STUCK_AFTER_3_STEPS)
    hung = agent(tmp_path, storage)
    assert (hung.state, hung.exit_code) == ("hung", 124)
    assert "GPU below 5% (0%)" in (hung.detail or "") and "SIGKILL" in (hung.detail or "")
    found = re.search(r"no progress for ([\d.]+)s", hung.detail or "")
    assert found is not None
    idle = float(found.group(1))
    assert HANG_TIMEOUT <= idle < HANG_TIMEOUT + POLL + 5  # timeout + one poll (slack: a busy host)
    assert (storage.read_json("status.json") or {})["state"] == "hung"
    assert (storage.read_json("status.json") or {})["last_checkpoint"]["step"] == 3
    resumed = agent(tmp_path, storage, attempt=2)
    assert resumed.state == "succeeded"
    assert b"resumed from step 3" in read_log(storage)[0]


@pytest.mark.parametrize("mode", ["prints", "heartbeat"])
def test_a_script_that_shows_progress_at_zero_gpu_is_not_hung(tmp_path: Path, gpu: Path, mode: str) -> None:
    result = agent(tmp_path, store(tmp_path, QUIET_FOR), mode)
    assert (result.state, result.exit_code) == ("succeeded", 0), result.detail


def test_a_silent_script_keeping_the_gpu_busy_is_not_hung(tmp_path: Path, gpu: Path) -> None:
    gpu.write_text("0\n87\n")  # the busiest GPU counts
    result = agent(tmp_path, store(tmp_path, QUIET_FOR), "silent")
    assert (result.state, result.exit_code) == ("succeeded", 0), result.detail
    exported = generate_latest(metrics.RUNCTL_REGISTRY).decode()
    assert 'runctl_gpu_utilisation_percent{gpu="1"} 87.0' in exported  # the agent's /metrics


def test_without_any_gpu_reading_the_other_signals_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi, no NVML
    result = agent(tmp_path, store(tmp_path, QUIET_FOR), "silent")
    assert result.state == "hung" and "GPU" not in (result.detail or "").split(";")[0]
