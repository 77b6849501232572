"""`runctl doctor`: a broken config, missing or refused credentials, storage, ledger, clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runctl.clients.clock import server_clock_offset
from runctl.workflows.doctor import skew_check
from tests.conftest import run_cli
from tests.support.fault_proxy import FaultProxy, ec2_error
from tests.support.readonly import read_only


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere boto3 looks (env, files, instance metadata)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def doctor(*args: str, cwd: Path | None = None) -> tuple[int, dict[str, dict]]:
    result = run_cli("doctor", "--timeout", "3", "--output", "json", *args, cwd=cwd)
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return result.returncode, {c["name"]: c for c in report["checks"]}


def test_local_only_setup_passes_with_warnings(no_aws: None) -> None:
    code, checks = doctor()
    assert code == 0
    assert [c["status"] for c in checks.values()] == ["ok", "ok", "ok", "warn", "warn", "skip", "skip"]
    assert checks["aws"]["message"] == "not configured: no AWS credentials found"
    assert "aws configure" in checks["aws"]["fix"]
    assert "RUNPOD_API_KEY" in checks["runpod"]["fix"]


def test_broken_config_fails_with_78_and_the_other_checks_still_run(no_aws: None, tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('[local]\ngrace_period = "soon"\n')
    code, checks = doctor(cwd=tmp_path)
    assert code == 78
    config = checks["config"]
    assert config["status"] == "fail" and config["exit_code"] == 78
    assert "local.grace_period" in config["message"] and "runctl config validate" in config["fix"]
    assert checks["state dir"]["status"] == "ok" and checks["ledger"]["status"] == "ok"


def test_table_output_names_status_and_fix(no_aws: None, tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text("[locall]\n")
    result = run_cli("doctor", cwd=tmp_path)
    assert result.returncode == 78
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fail  config") and "did you mean 'local'" in lines[0]
    assert lines[1].strip().startswith("fix:")
    assert any(line.startswith("warn  aws") for line in lines)


def test_storage_configured_without_credentials_fails(no_aws: None, tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('[aws]\ns3_bucket = "ckpts"\n')
    code, checks = doctor(cwd=tmp_path)
    assert code == 1
    assert checks["aws"]["status"] == "warn"
    assert checks["storage"]["status"] == "fail" and "s3://ckpts" in checks["storage"]["message"]


def test_local_storage_round_trip(no_aws: None, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (tmp_path / ".runctl.toml").write_text(f'[storage]\nuri = "{store}"\n')
    code, checks = doctor(cwd=tmp_path)
    assert code == 0 and checks["storage"]["status"] == "ok"
    assert checks["storage"]["message"] == f"{store} is writable and readable"
    assert not list(store.rglob("*.json"))  # the probe object was removed


def test_runpod_key_is_reported_present_but_never_shown(no_aws: None, tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('[runpod]\napi_key = "rp-secret-value-123"\n')
    result = run_cli("doctor", "--output", "json", cwd=tmp_path)
    assert "rp-secret-value-123" not in result.stdout + result.stderr
    runpod = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "runpod")
    assert runpod["status"] == "ok" and "configuration" in runpod["message"]


def test_aws_configured_against_moto(aws: str, tmp_path: Path) -> None:
    from runctl.clients import aws as aws_clients

    aws_clients.client("s3", "us-east-1").create_bucket(Bucket="ckpts")
    (tmp_path / ".runctl.toml").write_text('[aws]\ns3_bucket = "ckpts"\n')
    code, checks = doctor(cwd=tmp_path)
    assert code == 0, checks
    assert checks["aws"]["status"] == "ok" and "account 123456789012" in checks["aws"]["message"]
    assert checks["storage"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok" and aws in checks["clock"]["message"]

    (tmp_path / ".runctl.toml").write_text('[aws]\ns3_bucket = "no-such-bucket"\n')
    code, checks = doctor(cwd=tmp_path)
    assert code == 1 and checks["storage"]["status"] == "fail"
    assert "aws s3 mb s3://no-such-bucket" in checks["storage"]["fix"]


def test_refused_credentials_fail(fault_proxy: FaultProxy) -> None:
    fault_proxy.fail_first(1, ec2_error("InvalidClientTokenId", 403), action="GetCallerIdentity")
    code, checks = doctor()
    assert code == 1
    assert checks["aws"]["status"] == "fail" and "InvalidClientTokenId" in checks["aws"]["message"]
    assert "credentials" in checks["aws"]["fix"]
    assert fault_proxy.count("GetCallerIdentity") == 1  # one attempt, no retry storm


def test_corrupt_ledger_fails(no_aws: None, isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "ledger.db").write_bytes(b"this is not a database" * 100)
    code, checks = doctor()
    assert code == 1
    assert checks["ledger"]["status"] == "fail" and "not a readable database" in checks["ledger"]["message"]


def test_a_read_only_ledger_fails_naming_the_file_and_the_fix(no_aws: None, isolated_env: Path) -> None:
    assert doctor()[1]["ledger"]["status"] == "ok"  # creates it
    ledger = isolated_env / "ledger.db"
    before = ledger.read_bytes()
    with read_only(ledger):
        code, checks = doctor()
    assert code == 1
    check = checks["ledger"]
    assert (
        check["status"] == "fail" and str(ledger) in check["message"] and "not writable" in check["message"]
    )
    assert "chmod u+w" in check["fix"] and "RUNCTL_STATE_DIR" in check["fix"]
    assert ledger.read_bytes() == before


@pytest.fixture
def skewed_server() -> Iterator[str]:
    """An HTTP server whose Date header is 10 minutes ahead."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            return formatdate(time.time() + 600, usegmt=True)

        def do_GET(self) -> None:
            self.send_response(403)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_clock_skew_from_the_date_header(skewed_server: str) -> None:
    started = time.monotonic()
    offset = server_clock_offset(skewed_server, timeout=60)  # generous: a loaded machine is slow
    took = time.monotonic() - started  # the estimate is good to half the round trip + Date's 1 s
    assert offset == pytest.approx(600, abs=1 + took)
    check = skew_check(offset, skewed_server)
    assert check.status == "fail" and "600s behind" in check.message and "timedatectl" in check.fix
    assert skew_check(-90, "x").status == "warn"
    assert skew_check(3, "x").status == "ok"
    assert skew_check(server_clock_offset("http://127.0.0.1:9", timeout=1), "x").status == "skip"
