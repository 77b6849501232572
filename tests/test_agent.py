"""The agent on a (simulated) machine: storage sync, spot notices, resume, outcomes.

Storage is a real local directory here; the S3 path is exercised by the EC2 end-to-end tests.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from runctl.agent.imds import Imds
from runctl.agent.runner import AgentOptions, run_agent
from runctl.agent.sync import read_log
from runctl.storage.local import LocalStorage
from tests.conftest import EXAMPLES
from tests.support.fake_imds import FakeImds


def bundle(storage: LocalStorage, files: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    storage.put_bytes("code.tar.gz", buffer.getvalue())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "bucket" / "jobs" / "j-agent")
    bundle(store, {"train.py": (EXAMPLES / "train_numpy.py").read_bytes()})
    return store


def options(tmp_path: Path, *args: str, attempt: int = 1, **kw: object) -> AgentOptions:
    return AgentOptions(
        job_id="j-agent",
        script="train.py",
        args=list(args),
        attempt=attempt,
        workdir=tmp_path / f"machine-{attempt}",
        heartbeat=0.2,
        **kw,
    )  # type: ignore[arg-type]


def steps_logged(text: str) -> list[int]:
    return [int(line.split()[0].split("=")[1]) for line in text.splitlines() if line.startswith("step=")]


def test_a_job_runs_and_everything_reaches_storage(tmp_path: Path, storage: LocalStorage) -> None:
    result = run_agent(options(tmp_path, "--steps", "60", "--save-every", "20"), storage)
    assert (result.state, result.exit_code) == ("succeeded", 0)
    status = storage.read_json("status.json")
    assert status["state"] == "succeeded" and status["exit_code"] == 0 and status["attempt"] == 1
    assert status["last_checkpoint"]["step"] == 60
    assert [c.step for c in storage.list_checkpoints("checkpoints")] == [20, 40, 60]
    log, _ = read_log(storage)
    assert b"done: step=60" in log


def test_a_spot_notice_preempts_and_the_next_attempt_resumes(tmp_path: Path, storage: LocalStorage) -> None:
    imds = FakeImds()
    try:
        timer = threading.Timer(1.5, imds.schedule_interruption, kwargs={"in_seconds": 25})
        timer.start()
        first = run_agent(
            options(
                tmp_path,
                "--steps",
                "400",
                "--save-every",
                "1000",
                "--sleep",
                "0.02",
                watch_spot=True,
                spot_poll_interval=0.1,
                spot_margin=5,
            ),
            storage,
            imds=Imds(imds.url),
        )
        timer.join()
    finally:
        imds.close()
    assert first.state == "preempted"
    status = storage.read_json("status.json")
    assert status["state"] == "preempted" and status["interruption"]["action"] == "terminate"
    saved = storage.latest_checkpoint("checkpoints")
    assert saved is not None and 0 < saved.step < 400  # saved on the notice, not at a save interval
    log, _ = read_log(storage)
    assert f"stopped at step {saved.step}".encode() in log

    second = run_agent(options(tmp_path, "--steps", "400", "--save-every", "1000", attempt=2), storage)
    assert second.state == "succeeded"
    log, _ = read_log(storage)
    text = log.decode()
    assert f"resumed from step {saved.step}" in text
    after = steps_logged(text.split("resumed from step", 1)[1])
    assert after[0] <= saved.step + 10  # no step lost: it continues right after the saved step
    assert storage.read_json("status.json")["attempt"] == 2


def test_a_failing_script_is_failed_with_its_exit_code(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    bundle(store, {"fail.py": b"import sys; print('about to fail'); sys.exit(3)\n"})
    result = run_agent(
        AgentOptions(job_id="j-f", script="fail.py", workdir=tmp_path / "m", heartbeat=0.2), store
    )
    assert (result.state, result.exit_code) == ("failed", 3)
    assert store.read_json("status.json")["exit_code"] == 3
    assert b"about to fail" in read_log(store)[0]


def test_a_hostile_code_bundle_is_refused_before_anything_runs(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    bundle(store, {"../../escaped.py": b"print('pwned')\n", "train.py": b"print('hi')\n"})
    result = run_agent(AgentOptions(job_id="j-h", script="train.py", workdir=tmp_path / "m"), store)
    assert result.state == "failed_setup"
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path.parent / "escaped.py").exists()
    assert json.loads(store.get_bytes("status.json"))["state"] == "failed_setup"


def test_agent_serves_its_metrics_while_it_runs(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    store = LocalStorage(tmp_path / "store")
    bundle(store, {"slow.py": b"import time\nprint('up', flush=True)\ntime.sleep(30)\n"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runctl",
            "agent",
            "run",
            "--job-id",
            "j-m",
            "--storage",
            str(tmp_path / "store"),
            "--workdir",
            str(tmp_path / "m"),
            "--metrics-port",
            str(port),
            "--grace-period",
            "2s",
            "slow.py",
        ],
    )
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and not text:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "runctl_retries" in names  # runctl's own metrics, served by the agent
    finally:
        agent.terminate()
        agent.wait(timeout=30)
