"""`runctl top`: the snapshot behind it, the textual app driven by its pilot, and the stop key
stopping a real `runctl local` job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl.core.ledger import Ledger
from runctl.providers.local import process_cloud_id
from runctl.tui.top import ConfirmScreen, LogScreen, TopApp
from runctl.workflows.dashboard import HEARTBEAT_EVENT, snapshot, spend_rate_series
from tests.conftest import EXAMPLES, run_cli


def _seed(ledger: Ledger, tmp_path: Path) -> tuple[str, str]:
    """A running job on a $3.60/h resource with GPU heartbeats and a log; a finished job."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "ckpt-00000120.pkl").write_bytes(b"x")
    log = tmp_path / "run.log"
    log.write_text("step=1 loss=0.69\nstep=10 loss=0.40\n")
    running = ledger.create_job(  # "run" by this test process, so it is alive and not lost
        name="bert", provider="local", script="train.py", checkpoint_dir=str(ckpt), log_path=str(log),
        runner_pid=os.getpid(),
    )  # fmt: skip
    ledger.update_job(running.id, state="running", started_at=time.time() - 90)
    resource = ledger.record_intent(provider="local", kind="process", job_id=running.id)
    ledger.mark_created(
        resource.id,
        cloud_id=process_cloud_id(os.getpid()),
        state="running",
        billable=True,
        rate_usd_per_hour=3.6,
    )
    for util in (10.0, 55.0, 97.0):
        ledger.add_event(HEARTBEAT_EVENT, "heartbeat", job_id=running.id, data={"gpu_percent": util})
    done = ledger.create_job(name="gpt", provider="local", script="t.py")
    ledger.finish_job(done.id, "succeeded", exit_code=0)
    return running.id, done.id


def test_snapshot_figures_come_from_the_ledger(tmp_path: Path) -> None:
    with Ledger.open_default() as ledger:
        running_id, done_id = _seed(ledger, tmp_path)
        snap = snapshot(ledger)
    rows = {s.job.id: s for s in snap.jobs}
    assert list(rows) == [running_id, done_id]  # active first
    running = rows[running_id]
    assert running.rate_usd_per_hour == pytest.approx(3.6)
    assert running.step == 120 and running.last_checkpoint.endswith("ckpt-00000120.pkl")
    assert running.gpu_util == [10.0, 55.0, 97.0]
    assert 85 < running.elapsed_s < 120
    assert snap.rate_usd_per_hour == pytest.approx(3.6)
    assert snap.spend_rate_series[-1] == pytest.approx(3.6) and snap.spend_rate_series[0] == 0.0
    assert rows[done_id].rate_usd_per_hour == 0.0 and rows[done_id].gpu_util == []


def test_spend_rate_series_samples_intervals() -> None:
    from runctl.core.ledger import UsageInterval

    now = 10_000.0
    intervals = [
        UsageInterval("r1", "j", now - 3600, now - 1800, 2.0),  # first half of the window
        UsageInterval("r2", "j", now - 900, None, 1.0),  # last quarter, still open
    ]
    series = spend_rate_series(intervals, now=now, window=3600, points=5)  # t = -60,-45,-30,-15,0 min
    assert series == [2.0, 2.0, 0.0, 1.0, 1.0]


def test_top_output_json_is_the_snapshot(tmp_path: Path) -> None:
    with Ledger.open_default() as ledger:
        running_id, _ = _seed(ledger, tmp_path)
    result = run_cli("top", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    job = data["jobs"][0]
    assert job["id"] == running_id and job["state"] == "running" and job["gpu_util"][-1] == 97.0


def test_top_refuses_without_a_terminal() -> None:
    result = run_cli("top")
    assert result.returncode == 64
    assert "needs a terminal" in result.stderr and "--output json" in result.stderr


def _cells(app: TopApp, table_id: str) -> list[list[str]]:
    from textual.widgets import DataTable

    table = app.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_dashboard_renders_seeded_jobs_and_opens_a_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        with Ledger.open_default() as ledger:
            running_id, done_id = _seed(ledger, tmp_path)
            app = TopApp(ledger, interval=60)
            async with app.run_test(size=(180, 50)) as pilot:
                await pilot.pause()
                rows = _cells(app, "#jobs")
                assert [r[0] for r in rows] == [running_id, done_id]
                assert rows[0][1:5] == ["bert", "local", "1", "running"]
                assert rows[0][5] == "120" and rows[0][6] == "ckpt-00000120.pkl"
                assert rows[0][8] == "$3.60" and rows[1][4] == "succeeded"
                assert "1 running" in app.sub_title and "$3.60/h" in app.sub_title
                assert list(app.query_one("#gpu").data) == [10.0, 55.0, 97.0]
                assert [r[3] for r in _cells(app, "#resources")] == ["running"]
                assert any("heartbeat" in r[2] for r in _cells(app, "#events"))

                await pilot.press("l")
                await pilot.pause(0.3)
                assert isinstance(app.screen, LogScreen)
                log_lines = list(app.screen.query_one("#log").lines)
                assert "step=10 loss=0.40" in log_lines
                await pilot.press("escape")

                await pilot.press("down")  # the finished job: stop is refused, nothing asked
                await pilot.press("s")
                await pilot.pause()
                assert not isinstance(app.screen, ConfirmScreen)
                assert ledger.get_job(done_id).state == "succeeded"

    asyncio.run(scenario())


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_stop_key_stops_a_real_local_job() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runctl", "local", str(EXAMPLES / "train_numpy.py"), "--",
         "--steps", "100000", "--sleep", "0.01"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    ledger = Ledger.open_default()
    try:
        _wait_for(lambda: ledger.list_jobs(states=("running",)), 30, "the job to run")
        job = ledger.list_jobs(states=("running",))[0]
        log = Path(job.log_path)
        _wait_for(lambda: log.exists() and b"step=" in log.read_bytes(), 30, "the first training step")

        async def scenario() -> None:
            app = TopApp(ledger, interval=0.5)
            async with app.run_test(size=(180, 50)) as pilot:
                await pilot.pause()
                assert app.selected().job.id == job.id
                await pilot.press("s")
                await pilot.pause()
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("n")  # declined: nothing happens
                await pilot.pause(0.5)
                assert ledger.get_job(job.id).state == "running"
                await pilot.press("s")
                await pilot.pause()
                await pilot.press("y")
                deadline = time.monotonic() + 30
                while not ledger.get_job(job.id).is_final and time.monotonic() < deadline:
                    await pilot.pause(0.2)

        asyncio.run(scenario())
        final = ledger.get_job(job.id)
        assert final.state == "cancelled", final.detail
        assert final.last_checkpoint and Path(final.last_checkpoint).exists()
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        ledger.close()
