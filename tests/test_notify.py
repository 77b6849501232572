"""Notifications (:mod:`runctl.clients.notify`) through apprise to a loopback JSON webhook
receiver: the controller's relay over the in-memory provider, the agent's own notices, and
``runctl notify test``."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from runctl.agent.runner import AgentOptions, run_agent
from runctl.clients.notify import Notifier
from runctl.core.config import Config, CostConfig, NotifyConfig, RecoveryConfig
from runctl.core.ledger import Ledger
from runctl.providers.base import MachineSpec
from runctl.storage.local import LocalStorage
from runctl.workflows.notices import JobNotices
from runctl.workflows.remote import RemoteTrainer, job_storage
from tests.conftest import run_cli
from tests.support.memory_provider import MemoryProvider
from tests.test_agent import bundle
from tests.test_remote_library import FakeAgent, request
from tests.test_remote_library import config as config_fixture
from tests.test_remote_library import ledger as ledger_fixture

ledger, config = ledger_fixture, config_fixture  # the library tests' fixtures, shared
SECRET = "s3cret-token-value"


class Receiver:
    """A JSON webhook on loopback that keeps every message apprise posts to it."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://user:{SECRET}@127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        return [m["title"] for m in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"json://user:{SECRET}@127.0.0.1:{port}/hook"  # nothing listens there now


def notifying(config: Config, url: str, **changes: object) -> Config:
    return config.model_copy(update={"notify": NotifyConfig(urls=[SecretStr(url)]), **changes})


def test_each_event_is_notified_once_with_the_job_and_its_cost(
    ledger: Ledger, config: Config, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = MemoryProvider(ledger)
    agent = FakeAgent(provider, config, ["preempted", "succeeded"])
    try:
        ask = request(spec=MachineSpec(instance_type="mem.small", spot=True), auto_resume=True)
        trainer = RemoteTrainer(provider, ledger, notifying(config, receiver.url))
        job = trainer.submit(ask)
        result = trainer.wait(job.id, ask)
    finally:
        agent.close()
    assert result.job.state == "succeeded"
    JobNotices(ledger, job.id, [receiver.url]).relay()  # a reattached controller sends nothing again
    assert receiver.titles() == ["runctl: job resumed after a preemption", "runctl: job ended"]
    ended = receiver.received[-1]["message"]
    assert job.id in ended and "succeeded" in ended and "cost $" in ended
    assert all(job.id in m["message"] for m in receiver.received)
    assert SECRET not in json.dumps(receiver.received) and SECRET not in caplog.text
    assert SECRET not in json.dumps(ledger.get_job(job.id).request)
    # the agent finds the URLs in the job's storage: never in its command line or environment
    (argv, env), *_ = provider.machines["m-1"].commands
    assert SECRET not in " ".join(argv) and SECRET not in json.dumps(env)
    assert job_storage(config, job.id).read_json("control/notify.json") == {"urls": [receiver.url]}


def test_a_budget_stop_is_notified(ledger: Ledger, config: Config, receiver: Receiver) -> None:
    provider = MemoryProvider(ledger, rate=100.0)
    limited = notifying(config, receiver.url, cost=CostConfig(max_cost_usd=0.01))
    agent = FakeAgent(provider, config, ["running"])
    try:
        ask = request(over_budget=True, recovery=RecoveryConfig())
        trainer = RemoteTrainer(provider, ledger, limited)
        result = trainer.wait(trainer.submit(ask).id, ask)
    finally:
        agent.close()
    assert result.job.state == "cancelled"
    assert receiver.titles().count("runctl: budget reached: job stopped") == 1
    assert receiver.titles()[-1] == "runctl: job ended"


def test_a_receiver_that_is_down_never_fails_the_job(
    ledger: Ledger, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    provider = MemoryProvider(ledger)
    agent = FakeAgent(provider, config, ["succeeded"])
    try:
        ask = request()
        trainer = RemoteTrainer(provider, ledger, notifying(config, closed_port_url()))
        result = trainer.wait(trainer.submit(ask).id, ask)
    finally:
        agent.close()
    assert result.job.state == "succeeded" and result.exit_code == 0
    warnings = [r for r in caplog.records if r.name == "runctl.notify" and r.levelno == logging.WARNING]
    assert warnings and "not delivered" in warnings[0].getMessage()
    assert SECRET not in caplog.text
    sent = [e for e in ledger.events(job_id=result.job.id) if e.kind == "notify.sent"]
    assert sent and sent[-1].data["delivered"] is False


def test_the_agent_notifies_a_hang_itself(tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no GPU reading: silence alone decides
    storage = LocalStorage(tmp_path / "bucket" / "jobs" / "j-n")
    bundle(storage, {"train.py": b"import time\nprint('start', flush=True)\ntime.sleep(3600)\n"})
    storage.write_json("control/notify.json", {"urls": [receiver.url]})  # as the controller does
    options = AgentOptions(
        job_id="j-n",
        script="train.py",
        workdir=tmp_path / "m",
        heartbeat=0.25,
        grace_period=0.5,
        hang_timeout=1.0,
    )
    result = run_agent(options, storage)
    assert result.state == "hung"
    assert receiver.titles() == ["runctl: job hung"]
    assert "j-n" in receiver.received[0]["message"] and "attempt 1 hung" in receiver.received[0]["message"]


def test_a_notice_id_is_sent_once(receiver: Receiver) -> None:
    notifier = Notifier([receiver.url])
    assert notifier.send("n-1", "runctl: one", "first")
    assert not notifier.send("n-1", "runctl: one", "again")
    assert receiver.titles() == ["runctl: one"]


def test_notify_test_command(receiver: Receiver) -> None:
    result = run_cli("notify", "test", "--url", receiver.url)
    assert result.returncode == 0, result.stderr
    assert receiver.titles() == ["runctl: test"]
    down = run_cli("notify", "test", "--url", closed_port_url())
    assert down.returncode == 69 and "did not reach" in down.stderr and SECRET not in down.stderr


def test_config_show_masks_the_urls(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text(f'[notify]\nurls = ["json://user:{SECRET}@127.0.0.1:9/hook"]\n')
    shown = run_cli("config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "[notify]" in shown.stdout and SECRET not in shown.stdout + shown.stderr
