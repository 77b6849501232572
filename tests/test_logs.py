"""Logs: JSON lines that parse one by one and carry job/operation/error fields; -q/-v; and
secrets that never appear, whatever the path (message, arguments, fields, tracebacks)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.core import logs
from runctl.core.errors import NotFoundError
from tests.conftest import EXAMPLES, run_cli

ENV_SECRET = "sk-planted-env-4f1c9a77d2"
CONFIG_SECRET = "sk-planted-config-8b2e61c0aa"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN0123"


def json_lines(text: str) -> list[dict]:
    """Every non-empty line must be one JSON object."""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(r, dict) for r in records)
    return records


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose config holds a RunPod key."""
    (tmp_path / ".runctl.toml").write_text(f'[runpod]\napi_key = "{CONFIG_SECRET}"\n')
    return tmp_path


@pytest.mark.parametrize("debug", [False, True])
def test_json_error_lines_never_show_planted_secrets(project: Path, debug: bool) -> None:
    script = f"/nonexistent/{ENV_SECRET}/{CONFIG_SECRET}.py"
    args = ["--debug"] if debug else []
    result = run_cli(
        *args, "--log-format", "json", "local", script, cwd=project, env={"RUNPOD_API_KEY": ENV_SECRET}
    )
    assert result.returncode == 66
    assert ENV_SECRET not in result.stderr + result.stdout
    assert CONFIG_SECRET not in result.stderr + result.stdout
    [record] = json_lines(result.stderr)
    assert record["level"] == "error" and record["error"] == "NotFoundError"
    assert record["exit_code"] == 66 and record["hint"] == "check the path"
    assert record["message"] == "script /nonexistent/***/***.py does not exist"
    assert ("traceback" in record) is debug
    if debug:
        assert "NotFoundError" in record["traceback"]


def test_json_logs_of_an_interrupted_run(tmp_path: Path) -> None:
    """Shutdown notices and the final status line are JSON too; the script's output is not a log."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runctl", "--log-format", "json", "local",
         str(EXAMPLES / "train_numpy.py"), "--", "--steps", "100000", "--sleep", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    first = proc.stdout.readline()  # the script has started training
    assert first.startswith(b"step=1 ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert b"stopped at step" in out
    records = json_lines(err.decode())
    shutdown = [r for r in records if r["logger"] == "runctl.shutdown"]
    assert shutdown and "received SIGTERM" in shutdown[0]["message"] and shutdown[0]["level"] == "warning"
    status = [r for r in records if r["message"].startswith("job ")]
    assert status and "interrupted" in status[0]["message"]
    assert status[0]["job_id"] in status[0]["message"]
    assert all(r["ts"].endswith("Z") for r in records)


def test_config_log_format_applies_and_the_flag_wins(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('[monitoring]\nlog_format = "json"\n')
    from_config = run_cli("local", "missing.py", cwd=tmp_path)
    assert json_lines(from_config.stderr)[0]["error"] == "NotFoundError"
    flag = run_cli("--log-format", "text", "local", "missing.py", cwd=tmp_path)
    assert flag.stderr.startswith("error: script missing.py does not exist")
    assert "hint: check the path" in flag.stderr


def test_quiet_and_verbose(tmp_path: Path) -> None:
    args = ("local", str(EXAMPLES / "train_numpy.py"), "--", "--steps", "3")
    normal = run_cli(*args)
    assert normal.returncode == 0 and "succeeded" in normal.stderr
    quiet = run_cli("-q", *args)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert run_cli("-q", "local", "missing.py").stderr.startswith("error:")  # errors still show
    verbose = run_cli("-v", "--log-format", "json", "--config", str(tmp_path / "none.toml"), "config", "show")
    assert verbose.returncode == 78  # (a missing --config file) still one JSON line
    assert json_lines(verbose.stderr)[0]["exit_code"] == 78


@pytest.fixture
def installed() -> Iterator[None]:
    """runctl's handler installed in this process, and removed afterwards."""
    yield
    root = logging.getLogger(logs.ROOT)
    if logs._handler is not None:
        root.removeHandler(logs._handler)
    logs._handler = None
    root.setLevel(logging.NOTSET)
    logging.getLogger(logs.CLI_LOGGER).setLevel(logging.NOTSET)


def test_every_path_of_a_record_is_redacted(
    installed: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    logs.setup_logging("json", verbosity=1, secrets=[CONFIG_SECRET])
    logs.add_secret(ENV_SECRET)
    log = logging.getLogger("runctl.providers.example")
    log.info("calling with %s and %s", CONFIG_SECRET, ENV_SECRET, extra={"operation": "op", "job_id": "j-1"})
    log.warning("header Authorization: Bearer eyJhbGciOi.J9abc-def_ghi", extra={"hint": f"try {ENV_SECRET}"})
    log.warning("env AWS_SECRET_ACCESS_KEY=%s token %s", os.environ["AWS_SECRET_ACCESS_KEY"], TOKEN)
    log.warning('{"api_key": "abcdef123456", "password": hunter2hunter2} via https://user:pa55word@host/x')
    try:
        raise NotFoundError(f"no such thing {CONFIG_SECRET}")
    except NotFoundError:
        log.exception("failed")
    err = capsys.readouterr().err
    for secret in (CONFIG_SECRET, ENV_SECRET, "eyJhbGciOi", "wJalrXUtnFEMI", "FwoGZXIvYXdz", "abcdef123456",
                   "hunter2", "pa55word"):  # fmt: skip
        assert secret not in err
    records = json_lines(err)
    assert [r["level"] for r in records] == ["info", "warning", "warning", "warning", "error"]
    assert records[0]["operation"] == "op" and records[0]["job_id"] == "j-1"
    assert records[1]["message"] == "header Authorization: Bearer ***" and records[1]["hint"] == "try ***"
    assert records[3]["message"] == '{"api_key": "***", "password": ***} via https://user:***@host/x'
    assert "NotFoundError: no such thing ***" in records[4]["traceback"]


def test_ordinary_words_are_not_redacted() -> None:
    text = "max_tokens=10 tokenizer: gpt2 step=5 loss=0.3 s3://bucket/key"
    assert logs.redact(text) == text


def test_text_format_and_quiet(installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("text")
    logging.getLogger(logs.CLI_LOGGER).info("job j-1 started")
    logging.getLogger("runctl.retry").info("hidden without -v")
    logging.getLogger("runctl.retry").warning("describe failed, retrying")
    logs.report_error(NotFoundError("no job 'x'", hint="'runctl jobs list' shows the job ids"))
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "job j-1 started",
        "runctl: describe failed, retrying",
        "error: no job 'x'",
        "hint: 'runctl jobs list' shows the job ids",
    ]
    logs.setup_logging("text", verbosity=-1)
    logging.getLogger(logs.CLI_LOGGER).info("status")
    logging.getLogger("runctl.retry").warning("warned")
    assert capsys.readouterr().err == ""
    started = time.monotonic()
    logs.setup_logging("json", verbosity=2)
    logging.getLogger("runctl.retry").debug("detail")
    assert json_lines(capsys.readouterr().err)[0]["level"] == "debug"
    assert time.monotonic() - started < 1
