"""Every secret runctl handles is masked where errors are made and stored (runctl.core.secrets):
errors, the ledger's details and events, and log lines; whatever the secret's source."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.core import logs, secrets
from runctl.core.errors import CloudProviderError, ValidationError
from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.conftest import run_cli
from tests.support.fake_runpod import FakeRunpod
from tests.support.remote import job_bucket

PROFILE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzPROFILEzz"
PROFILE_KEY_ID = "AKIAPROFILEONLY12345"


@pytest.fixture
def forget_secrets() -> Iterator[None]:
    saved = set(secrets._values)
    yield
    secrets._values.clear()
    secrets._values.update(saved)


@pytest.mark.parametrize(
    "text",
    [
        "cannot create /etc/passwd: [Errno 17] File exists",
        "open /home/u/.ssh/token: Permission denied",
        "token: expired, log in again",
        "the api_key: is missing",
        "max_tokens=10 tokenizer: gpt2 step=5 s3://bucket/key",
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert logs.redact(text) == text  # the log redactor, the one errors and the ledger use


def test_credential_looking_values_are_masked() -> None:
    assert secrets.redact("api_key=abc123 password: hunter2hunter2") == "api_key=*** password: ***"
    assert secrets.redact('{"session_token": "FwoGZX"}') == '{"session_token": "***"}'


def test_an_error_and_the_ledger_never_hold_a_registered_secret(tmp_path: Path, forget_secrets: None) -> None:
    late = "late-registered-credential-42"
    error = CloudProviderError(f"refused: {late}", hint=f"retry with {late}")
    secrets.register_env({"WANDB_API_KEY": late, "AWS_REGION": "eu-west-3"})  # registered afterwards
    assert late not in str(error) and late not in str(error.to_dict())
    assert secrets.redact("eu-west-3") == "eu-west-3"  # not a credential: not masked
    with Ledger(tmp_path / LEDGER_FILE) as ledger:
        job = ledger.create_job(name="j", provider="runpod", script="t.py")
        ledger.add_event("x", f"said {late}", job_id=job.id, data={"body": [f"echo {late}"]})
        ledger.finish_job(job.id, "failed_setup", detail=f"create failed: {late}")
        assert ledger.get_job(job.id).detail == "create failed: ***"
    assert late.encode() not in _ledger_bytes(tmp_path / LEDGER_FILE)


def _ledger_bytes(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump()).encode()
    finally:
        conn.close()


@pytest.fixture
def profile_credentials(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS credentials only in a shared-credentials file, under a named profile."""
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[training]\naws_access_key_id = {PROFILE_KEY_ID}\naws_secret_access_key = {PROFILE_SECRET}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-none"))
    monkeypatch.setenv("AWS_PROFILE", "training")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


def test_credentials_boto3_read_from_a_profile_are_masked(
    profile_credentials: None, forget_secrets: None
) -> None:
    from runctl.clients.aws import client, reset_clients

    reset_clients()
    client("s3", "us-east-1")
    assert secrets.redact(f"signed with {PROFILE_SECRET}") == "signed with ***"
    assert PROFILE_SECRET not in str(ValidationError(f"bad request {PROFILE_SECRET}"))


def test_a_runpod_create_error_echoing_the_pod_env_leaks_nothing(
    aws: str,
    runpod_fake: FakeRunpod,
    project: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    job_bucket(monkeypatch)  # made with the test's own credentials, before they are hidden
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[training]\naws_access_key_id = {PROFILE_KEY_ID}\naws_secret_access_key = {PROFILE_SECRET}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "training")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    runpod_fake.reject_input_with_echo = True
    long_lived = {"RUNCTL_RUNPOD__LONG_LIVED_CREDENTIALS": "true"}  # the pod gets the profile's keys
    result = run_cli("--debug", "runpod", "train", "new", "train.py", "--project-dir", str(project),
                     env=long_lived, cwd=project, timeout=180)  # fmt: skip
    assert result.returncode == 65, result.stderr
    assert 'got invalid value (not shown); Field "cloudType"' in result.stderr
    assert PROFILE_SECRET not in result.stderr + result.stdout
    created = [r for r in runpod_fake.requests if "podFindAndDeployOnDemand" in r.fields]
    assert created and PROFILE_SECRET in str(created[0].variables)  # the pod did get the key
    dump = _ledger_bytes(isolated_env / LEDGER_FILE)
    assert b"got invalid value" in dump and PROFILE_SECRET.encode() not in dump
    jobs = run_cli("jobs", "list", "-o", "json").stdout + run_cli("events").stdout
    assert PROFILE_SECRET not in jobs
