"""Shared fixtures: an isolated state/config dir per test, the CLI as a real subprocess,
a moto server on loopback reached through AWS_ENDPOINT_URL, and a fault-injecting proxy."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fake_runpod import FakeRunpod
from tests.support.fault_proxy import FaultProxy
from tests.support.remote import cloud, project  # noqa: F401  (fixtures: simulated EC2, the project)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state dir and config home, and no RUNCTL_* leaking in."""
    for var in list(os.environ):
        if var.startswith("RUNCTL_") or var == "RUNPOD_API_KEY":
            monkeypatch.delenv(var, raising=False)
    state = tmp_path / "state"
    monkeypatch.setenv("RUNCTL_STATE_DIR", str(state))
    # machines are pre-provisioned unless a test ships the agent (tests.support.agent_source):
    # no test builds a wheelhouse for every platform from the network by accident
    monkeypatch.setenv("RUNCTL_REMOTE__AGENT_SOURCE", "preinstalled")
    monkeypatch.setenv("RUNCTL_CONFIG_HOME", str(tmp_path / "config-home"))
    return state


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> CliResult:
    """Run ``python -m runctl ARGS`` as a real process and wait for it."""
    proc = subprocess.run(
        [sys.executable, "-m", "runctl", *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> type[CliResult]:
    return run_cli  # type: ignore[return-value]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the session, on a free loopback port. Returns its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point boto3 (in this process and in CLI subprocesses) at a freshly reset moto server."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    for key, value in {
        "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    from runctl.clients.aws import reset_clients

    reset_clients()
    yield moto_server
    reset_clients()


@pytest.fixture
def fault_proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the moto server; boto3 is pointed at the proxy."""
    proxy = FaultProxy(aws)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    from runctl.clients.aws import reset_clients

    reset_clients()
    yield proxy
    proxy.close()
    reset_clients()


@pytest.fixture
def runpod_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunpod]:
    """A fake RunPod GraphQL API on loopback; runctl (in-process and CLI) is pointed at it."""
    fake = FakeRunpod()
    monkeypatch.setenv("RUNCTL_RUNPOD__API_URL", fake.url)
    monkeypatch.setenv("RUNPOD_API_KEY", fake.api_key)
    yield fake
    fake.close()
