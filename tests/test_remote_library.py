"""RemoteTrainer, the launch path and the Lifecycle as a library, over an in-memory provider.

The provider (:mod:`tests.support.memory_provider`) implements the whole contract without a
network; job storage is S3 on the moto server, and a thread plays the agent: for every command
the provider was asked to start it writes the job's ``status.json`` with the outcome the test
scripted for that attempt. The moto and simulator suites prove the real providers; these prove
the workflow's own decisions (resume, fall back to on-demand, stop and resume, refuse, release).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runctl.core.config import Config, CostConfig, RecoveryConfig, RemoteConfig, StorageConfig
from runctl.core.errors import BudgetError, ResourceError, UnsupportedError
from runctl.core.ledger import Ledger
from runctl.providers.base import MachineSpec
from runctl.workflows.remote import RemoteTrain, RemoteTrainer, job_storage
from tests.support.memory_provider import MemoryProvider


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "ledger.db")
    yield opened
    opened.close()


@pytest.fixture
def config(aws: str) -> Config:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs")
    # the fake agent answers for the machine: nothing to ship to it
    return Config(
        storage=StorageConfig(uri="s3://runs/lib"), remote=RemoteConfig(agent_source="preinstalled")
    )


class FakeAgent:
    """Answers each started command with the next scripted outcome, as the agent would."""

    def __init__(self, provider: MemoryProvider, config: Config, outcomes: list[str]) -> None:
        self.provider, self.config, self.outcomes = provider, config, list(outcomes)
        self.answered = 0
        self.running: tuple[str, int] | None = None  # the attempt answered "running", if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            commands = self.provider.commands()
            for argv in commands[self.answered :]:
                job_id, attempt = argv[argv.index("--job-id") + 1], int(argv[argv.index("--attempt") + 1])
                outcome = self.outcomes.pop(0) if self.outcomes else "running"
                state, _, code = outcome.partition(":")  # "failed:3": failed with exit code 3
                status = {"attempt": attempt, "state": state, "updated_at": time.time()}
                if state in ("succeeded", "failed"):
                    status["exit_code"] = int(code or (0 if state == "succeeded" else 1))
                job_storage(self.config, job_id).write_json("status.json", status)
                self.answered += 1
                self.running = (job_id, attempt) if state == "running" else None
            self._obey_stop()
            self._stop.wait(0.05)

    def _obey_stop(self) -> None:
        """A running attempt asked to stop (control/stop.json) ends cancelled, as the agent's would."""
        if self.running is None:
            return
        job_id, attempt = self.running
        storage = job_storage(self.config, job_id)
        asked = storage.read_json("control/stop.json")
        if asked and asked.get("attempt") == attempt:
            detail = f"stopped: {asked['reason']}; checkpoint saved"
            status = {"attempt": attempt, "state": "cancelled", "exit_code": 79, "detail": detail}
            storage.write_json("status.json", {**status, "updated_at": time.time()})
            self.running = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def request(**changes: object) -> RemoteTrain:
    base = RemoteTrain(
        script="train.py", sync_code=False, spec=MachineSpec(instance_type="mem.small"), poll_interval=0.05
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_preemptions_resume_then_fall_back_to_on_demand(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    agent = FakeAgent(provider, config, ["preempted", "preempted", "succeeded"])
    try:
        ask = request(
            spec=MachineSpec(instance_type="mem.small", spot=True),
            auto_resume=True,
            recovery=RecoveryConfig(max_preemptions=1),
        )
        trainer = RemoteTrainer(provider, ledger, config)
        job = trainer.submit(ask)
        result = trainer.wait(job.id, ask)
    finally:
        agent.close()
    assert result.job.state == "succeeded" and result.job.attempt == 3
    assert [s.spot for s in provider.applied] == [True, True, False]  # after 1 preemption: on-demand
    assert set(provider.describe().values()) == {"terminated"}  # every attempt's machine released
    kinds = [e.kind for e in ledger.events(job_id=job.id, limit=1000)]
    assert kinds.count("job.preemption") == 2


def test_stop_then_resume_on_the_same_machine(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    agent = FakeAgent(provider, config, ["running", "succeeded"])
    ask = request(on_interrupt="stop")
    trainer = RemoteTrainer(provider, ledger, config)
    try:
        job = trainer.submit(ask)
        threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT)).start()
        interrupted = trainer.wait(job.id, ask)
        assert interrupted.exit_code == 130 and interrupted.job.state == "stopped"
        assert not interrupted.job.is_final
        assert provider.describe() == {"m-1": "stopped"}
        assert ledger.list_resources(job_id=job.id)[0].state == "stopped"
        resumed = RemoteTrainer(provider, ledger, config).resume(job.id)
        assert resumed.state == "running" and resumed.attempt == 2
        result = trainer.wait(job.id, ask)
    finally:
        agent.close()
    assert result.job.state == "succeeded"
    attempts = [argv[argv.index("--attempt") + 1] for argv in provider.commands()]
    assert attempts == ["1", "2"] and len(provider.machines) == 1  # the same machine, started again
    assert "--on-exit" in provider.commands()[0] and "stop" in provider.commands()[0]


@pytest.mark.parametrize("stoppable, spot", [(False, False), (True, True)])
def test_stop_is_refused_before_anything_exists(ledger: Ledger, config: Config, stoppable, spot) -> None:
    provider = MemoryProvider(ledger, stoppable=stoppable)
    ask = request(on_interrupt="stop", spec=MachineSpec(instance_type="mem.small", spot=spot))
    with pytest.raises(UnsupportedError) as caught:
        RemoteTrainer(provider, ledger, config).submit(ask)
    assert "--on-interrupt stop" in caught.value.message and caught.value.hint
    assert ledger.list_jobs() == [] and ledger.list_resources() == [] and provider.machines == {}


def test_a_launch_over_the_hourly_limit_is_refused_before_any_write(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger, rate=100.0)
    limited = config.model_copy(update={"cost": CostConfig(max_hourly_usd=1.0)})
    said: list[str] = []
    with pytest.raises(BudgetError):
        RemoteTrainer(provider, ledger, limited, say=said.append).submit(request())
    assert ledger.list_jobs() == [] and provider.applied == []
    assert any("estimate: 1 x mem.small (on-demand)" in line for line in said)


def test_the_request_round_trips_through_the_ledger(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    ask = request(
        max_duration=3600.0, keep_last_n=3, outputs_to=Path("out"), env={"A": "1"}, over_budget=True
    )
    job = RemoteTrainer(provider, ledger, config).submit(ask)
    stored = RemoteTrain.from_dict(ledger.get_job(job.id).request or {})
    assert stored == ask


def test_lifecycle_records_the_billing_minimum_and_keeps_what_it_cannot_release(ledger: Ledger) -> None:
    provider = MemoryProvider(ledger)
    spec = MachineSpec(instance_type="mem.small")
    job = ledger.create_job(name="j", provider="memory", script="t.py")
    machines = [provider.apply(provider.plan(spec), job_id=job.id)[0] for _ in range(2)]
    assert all(ledger.get_resource(m.resource_id).spec["billing_minimum_s"] == 60.0 for m in machines)
    provider.fail_release.add(machines[0].cloud_id)
    with pytest.raises(ResourceError) as caught:
        provider.lifecycle.cleanup_on_failure(job.id)
    assert machines[0].cloud_id in caught.value.message
    states = {r.cloud_id: r.state for r in ledger.list_resources(job_id=job.id)}
    assert states == {machines[0].cloud_id: "running", machines[1].cloud_id: "terminated"}
