"""The recovery policy (:mod:`runctl.core.recovery`): its decisions alone, then as the remote
workflow applies them over the in-memory provider (fast, deterministic; the fake agent of
:mod:`tests.test_remote_library` plays each attempt's outcome)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runctl.core.config import Config, CostConfig, RecoveryConfig, load_config
from runctl.core.errors import CapacityError, ConfigError
from runctl.core.ledger import Ledger
from runctl.core.recovery import FREE_RESTARTS_CEILING, Recovery, capacity_retry
from runctl.workflows.remote import RemoteTrain, RemoteTrainer
from tests.support.memory_provider import MemoryProvider
from tests.test_remote_library import FakeAgent, request
from tests.test_remote_library import config as config_fixture
from tests.test_remote_library import ledger as ledger_fixture

ledger, config = ledger_fixture, config_fixture  # the library tests' fixtures, shared


def decide(recovery: Recovery, state: str, code: int | None = None, *, elapsed: float = 0.0) -> str:
    decision = recovery.after(state, code, auto_resume=True, spot=True, elapsed=elapsed)
    return decision.action + ("/on-demand" if decision.on_demand else "")


def test_each_event_has_its_own_count() -> None:
    recovery = Recovery(RecoveryConfig(max_restarts=1, restart_on_exit_codes=[7], max_hang_restarts=1))
    assert decide(recovery, "failed", 7) == "restart"  # free: max_restarts untouched
    assert decide(recovery, "failed", 7) == "restart"
    assert decide(recovery, "failed", 1) == "restart"  # the one counted restart
    assert decide(recovery, "failed", 7) == "restart"  # still free after it
    assert decide(recovery, "failed", 1) == "end"
    assert (recovery.restarts, recovery.free_restarts) == (1, 1)
    assert decide(recovery, "hung") == "restart"
    assert decide(recovery, "hung") == "end"
    assert decide(recovery, "succeeded") == "end"


def test_free_restarts_are_bounded_in_a_row() -> None:
    recovery = Recovery(RecoveryConfig(restart_on_exit_codes=[7]))
    actions = [decide(recovery, "failed", 7) for _ in range(FREE_RESTARTS_CEILING + 1)]
    assert actions == ["restart"] * FREE_RESTARTS_CEILING + ["end"]


def test_preemptions_fall_back_to_on_demand_and_stop_at_the_total_duration() -> None:
    recovery = Recovery(RecoveryConfig(max_preemptions=1, max_total_duration=3600))
    assert [decide(recovery, "preempted") for _ in range(2)] == ["resume", "resume/on-demand"]
    assert decide(recovery, "preempted", elapsed=3600) == "end"
    ended = recovery.after("failed", 1, auto_resume=True, spot=False, elapsed=4000)
    assert "max_total_duration (1h) reached" in ended.reason


def test_without_auto_resume_a_preemption_ends_the_job_and_says_why() -> None:
    decision = Recovery(RecoveryConfig()).after("preempted", None, auto_resume=False, spot=True, elapsed=0)
    assert decision.action == "end" and "--auto-resume" in decision.reason


def test_capacity_backoff_never_waits_past_the_capacity_wait() -> None:
    policy = capacity_retry(30.0)
    assert policy.deadline == 30.0 and policy.initial_delay == 1.0 and policy.max_delay == 5.0
    assert all(0 <= policy.backoff(n) <= 5.0 for n in range(1, 20))


def test_the_recovery_section_is_validated_with_the_key_named(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text("[recovery]\nrestart_on_exit_codes = [0]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(cwd=tmp_path, environ={})
    assert "recovery.restart_on_exit_codes" in str(caught.value)
    (tmp_path / ".runctl.toml").write_text('[recovery]\ncapacity_wait = "10m"\nmax_total_duration = "2h"\n')
    loaded = load_config(cwd=tmp_path, environ={}).config.recovery
    assert (loaded.capacity_wait, loaded.max_total_duration) == (600.0, 7200.0)


# -- the workflow applies it ----------------------------------------------------------------------


def events(ledger: Ledger, job_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.message) for e in ledger.events(job_id=job_id, limit=1000)]


def run(ledger: Ledger, config: Config, provider: MemoryProvider, ask: RemoteTrain, outcomes: list[str]):
    agent = FakeAgent(provider, config, outcomes)
    try:
        trainer = RemoteTrainer(provider, ledger, config)
        job = trainer.submit(ask)
        return trainer.wait(job.id, ask)
    finally:
        agent.close()


def test_flaky_exit_codes_restart_without_using_up_max_restarts(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    ask = request(recovery=RecoveryConfig(max_restarts=1, restart_on_exit_codes=[7]))
    result = run(ledger, config, provider, ask, ["failed:7", "failed:7", "failed:3", "failed:7", "failed:3"])
    assert result.job.state == "failed" and result.exit_code == 3 and result.job.attempt == 5
    said = [m for k, m in events(ledger, result.job.id) if k in ("job.restart", "recovery.end")]
    assert sum("max_restarts not used" in m for m in said) == 3
    assert sum("restart 1 of max_restarts (1)" in m for m in said) == 1
    assert "max_restarts (1) used up" in said[-1]
    assert set(provider.describe().values()) == {"terminated"}


def test_a_hung_attempt_restarts_once_then_ends_hung(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    result = run(ledger, config, provider, request(), ["hung", "hung"])
    assert result.job.state == "hung" and result.job.attempt == 2
    kinds = [k for k, _ in events(ledger, result.job.id)]
    assert kinds.count("job.restart") == 1 and "recovery.end" in kinds


def test_capacity_refused_three_times_waits_pending_then_runs(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    provider.refuse_capacity = 3
    said: list[str] = []
    agent = FakeAgent(provider, config, ["succeeded"])
    try:
        ask = request(recovery=RecoveryConfig(capacity_wait=120))
        trainer = RemoteTrainer(provider, ledger, config, say=said.append)
        job = trainer.submit(ask)
        result = trainer.wait(job.id, ask)
    finally:
        agent.close()
    assert result.job.state == "succeeded"
    waits = [m for k, m in events(ledger, job.id) if k == "recovery.capacity_wait"]
    assert [m.split(":")[0] for m in waits] == ["try 1", "try 2", "try 3"]
    assert "capacity_wait 2m" in waits[0]
    states = sorted(r.state for r in ledger.list_resources(job_id=job.id))
    assert states == ["create_failed"] * 3 + ["terminated"]


def test_capacity_refused_past_the_wait_is_no_capacity_and_leaves_nothing(
    ledger: Ledger, config: Config
) -> None:
    provider = MemoryProvider(ledger)
    provider.no_capacity = True
    ask = request(recovery=RecoveryConfig(capacity_wait=2))
    with pytest.raises(CapacityError) as caught:
        RemoteTrainer(provider, ledger, config).submit(ask)
    assert "within capacity_wait (2s" in caught.value.message
    job = ledger.list_jobs()[0]
    assert job.state == "no_capacity" and job.exit_code == 69
    assert len([k for k, _ in events(ledger, job.id) if k == "recovery.capacity_wait"]) >= 2
    assert {r.state for r in ledger.list_resources(job_id=job.id)} == {"create_failed"}
    assert provider.machines == {}


def test_max_total_duration_stops_the_job_gracefully_as_time_limit(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    ask = request(recovery=RecoveryConfig(max_total_duration=1, max_restarts=5), auto_resume=True)
    result = run(ledger, config, provider, ask, ["running"])
    assert result.job.state == "time_limit" and result.exit_code == 124 and result.job.attempt == 1
    assert "max_total_duration (1s) reached" in (result.job.detail or "")
    assert "checkpoint saved" in (result.job.detail or "")  # the agent stopped it, gracefully
    assert "recovery.time_limit" in [k for k, _ in events(ledger, result.job.id)]


def test_a_reattached_controller_continues_the_counts(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    ask = request(recovery=RecoveryConfig(max_restarts=1))
    first = run(ledger, config, provider, ask, ["failed:1", "failed:1"])
    assert first.job.attempt == 2 and first.job.state == "failed"
    recovery = Recovery.from_events(ask.recovery or RecoveryConfig(), ledger.events(job_id=first.job.id))
    assert recovery.restarts == 1


def test_the_policy_is_stored_with_the_job_resolved_from_the_config(ledger: Ledger, config: Config) -> None:
    provider = MemoryProvider(ledger)
    configured = config.model_copy(update={"recovery": RecoveryConfig(max_restarts=4, capacity_wait=60)})
    job = RemoteTrainer(provider, ledger, configured).submit(request())
    stored = RemoteTrain.from_dict(ledger.get_job(job.id).request or {})
    assert stored.recovery == RecoveryConfig(max_restarts=4, capacity_wait=60)
    legacy = RemoteTrain.from_dict({"script": "t.py", "max_restarts": 2, "max_preemptions": 0})
    assert legacy.recovery == RecoveryConfig(max_restarts=2, max_preemptions=0)


def test_max_cost_reached_in_the_middle_of_attempt_2_stops_it_gracefully(
    ledger: Ledger, config: Config
) -> None:
    provider = MemoryProvider(ledger, rate=100.0)  # $1.67 per machine at once (60 s minimum)
    limited = config.model_copy(update={"cost": CostConfig(max_cost_usd=2.5)})
    ask = request(recovery=RecoveryConfig(max_restarts=3), over_budget=True)
    result = run(ledger, limited, provider, ask, ["failed:1", "running"])
    assert result.job.state == "cancelled" and result.exit_code == 79 and result.job.attempt == 2
    assert "max_cost_usd" in (result.job.detail or "") and "checkpoint saved" in (result.job.detail or "")
    kinds = [k for k, _ in events(ledger, result.job.id)]
    assert kinds.count("job.restart") == 1 and "budget.stop" in kinds
