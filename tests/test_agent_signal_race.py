"""The lost-SIGTERM race: a shutdown signals the agent and the script at the same instant; a
script that saves and exits 0 at once must never be recorded ``succeeded`` (its work is not done
and a succeeded job is never resumed).

200 trials through the real agent (4 agents in parallel, 50 tiny jobs each), every core kept busy
by spinning processes this test starts and stops, the two signals sent back to back in both
orders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AGENTS = 4
TRIALS_EACH = 50


@pytest.fixture
def busy_cores() -> Iterator[int]:
    """One spinning process per core, for the duration of the test."""
    spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 2)]
    yield len(spinners)
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


def _signal_both(agent: subprocess.Popen[bytes], root: Path, errors: list[str]) -> None:
    """For each trial: once its script is ready, SIGTERM the agent and the script's group."""
    for trial in range(TRIALS_EACH):
        ready = root / str(trial) / "ready"
        deadline = time.monotonic() + 120
        while not ready.exists():
            if agent.poll() is not None or time.monotonic() > deadline:
                errors.append(f"{root.name}: trial {trial} never started (agent rc {agent.poll()})")
                return
            time.sleep(0.002)
        script_pid = int(ready.read_text())
        if trial % 2:  # both orders, back to back
            os.kill(agent.pid, signal.SIGTERM)
            os.killpg(script_pid, signal.SIGTERM)
        else:
            os.killpg(script_pid, signal.SIGTERM)
            os.kill(agent.pid, signal.SIGTERM)


def test_a_script_stopped_with_its_agent_is_never_recorded_succeeded(tmp_path: Path, busy_cores: int) -> None:
    agents, threads, errors = [], [], []
    for n in range(AGENTS):
        root = tmp_path / f"agent-{n}"
        root.mkdir()
        agent = subprocess.Popen(
            [sys.executable, "-m", "tests.support.signal_race", str(root), str(TRIALS_EACH)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        thread = threading.Thread(target=_signal_both, args=(agent, root, errors))
        thread.start()
        agents.append((agent, root))
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=600)
    records = []
    for agent, root in agents:
        _, stderr = agent.communicate(timeout=120)
        assert agent.returncode == 0, stderr.decode()[-2000:]
        records += [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert not errors, errors
    assert len(records) == AGENTS * TRIALS_EACH
    states = {state: sum(r["state"] == state for r in records) for state in {r["state"] for r in records}}
    succeeded = [r for r in records if r["state"] == "succeeded"]
    assert not succeeded, f"{len(succeeded)} of {len(records)} recorded succeeded: {succeeded[:3]}; {states}"
    assert states == {"preempted": len(records)}, states
    assert all("exit code 0" in r["detail"] for r in records)  # the script's own exit, noted
