"""Bad values that used to get through (issue 14): non-finite money and durations, and the
internal errors (exit 70) where a clear error belongs. Each is one clear error, no traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runctl.cli.render import json_text
from runctl.core.errors import ValidationError
from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.conftest import run_cli


def clear_error(result: object, code: int, *words: str) -> None:
    out, err = result.stdout, result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, (result.returncode, err)  # type: ignore[attr-defined]
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert [line for line in err.splitlines() if line.lower().startswith("error:")], err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["aws", "create", "t3.micro", "--spot", "--max-price", "nan"], "--max-price"),
        (["aws", "create", "t3.micro", "--spot", "--max-price", "inf"], "--max-price"),
        (["runpod", "create", "--bid", "inf"], "--bid"),
        (["runpod", "train", "new", "t.py", "--bid", "nan"], "--bid"),
        (["cost", "estimate", "runpod", "--bid", "-inf"], "--bid"),
        (["doctor", "--timeout", "inf"], "--timeout"),
        (["doctor", "--timeout", "1e308"], "--timeout"),
        (["top", "--interval", "nan"], "--interval"),
        (["local", "--max-duration", "99999999999d", "t.py"], "--max-duration"),
    ],
)
def test_non_finite_options_are_usage_errors(args: list[str], option: str) -> None:
    clear_error(run_cli(*args), 64, option)


def test_a_non_finite_rate_never_reaches_the_ledger(tmp_path: Path) -> None:
    with Ledger(tmp_path / LEDGER_FILE) as ledger:
        intent = ledger.record_intent(provider="aws", kind="instance")
        for rate in (math.inf, math.nan, -1.0):
            with pytest.raises(ValidationError, match="finite"):
                ledger.mark_created(intent.id, cloud_id="i-1", state="running", billable=True,
                                    rate_usd_per_hour=rate)  # fmt: skip
        with pytest.raises(ValidationError):
            ledger.set_rate(intent.id, math.inf)


def test_json_output_is_always_json() -> None:
    assert json.loads(json_text({"cost": 1.5})) == {"cost": 1.5}
    with pytest.raises(ValueError):
        json_text({"cost": math.inf})  # refused, never printed as Infinity


def test_jobs_list_json_is_valid_with_an_env_rate(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("print('x')\n")
    result = run_cli("local", "t.py", cwd=tmp_path, env={"RUNCTL_LOCAL__RATE_USD_PER_HOUR": "inf"})
    clear_error(result, 78, "RUNCTL_LOCAL__RATE_USD_PER_HOUR", "finite")
    listed = run_cli("jobs", "list", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [
        (["jobs", "list", "--limit", "99999999999999999999"], {}, 64, ["--limit"]),
        (["events", "--limit", "9223372036854775808"], {}, 64, ["--limit"]),
        (["init", "/dev/null/x.toml"], {}, 73, ["/dev/null/x.toml", "Not a directory"]),
        (["--config", "/nonexistent.toml", "jobs", "list"], {}, 78, ["/nonexistent.toml", "does not exist"]),
        (["jobs", "list"], {"RUNCTL_CONFIG": "/"}, 78, ["is a directory"]),
        (
            ["config", "validate"],
            {"RUNCTL_AWS__REGION": "us-east-1a"},
            78,
            ["aws.region", "not an AWS region"],
        ),
        (["config", "validate"], {"RUNCTL_AWS__REGION": "Frankfurt"}, 78, ["aws.region", "us-east-1"]),
    ],
)
def test_former_internal_errors_are_clear(
    args: list[str], env: dict[str, str], code: int, words: list[str]
) -> None:
    clear_error(run_cli(*args, env=env), code, *words)


def test_a_scalar_section_with_an_env_override_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text('aws = "us-east-1"\n')
    result = run_cli("config", "validate", cwd=tmp_path, env={"RUNCTL_AWS__REGION": "us-east-1"})
    clear_error(result, 78, str(tmp_path / ".runctl.toml"), "RUNCTL_AWS__REGION", "[aws] table")


@pytest.mark.parametrize(
    "region", ["us-east-1", "us-gov-west-1", "cn-north-1", "us-isob-east-1", "ap-southeast-2"]
)
def test_real_region_names_pass(region: str) -> None:
    from runctl.core.config import load_config

    assert load_config(environ={"RUNCTL_AWS__REGION": region}).config.aws.region == region


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["agent", "run", "--job-id", "j-1", "--storage", "", "t.py"], 65, ["storage URI is empty"]),
        (["agent", "run", "--job-id", "j-1", "--storage", "gs://b/p", "t.py"], 65, ["gs://b/p", "s3://"]),
        (["agent", "run", "--job-id", "j-1", "--storage", "store", "missing.py"], 66, ["missing.py"]),
        (["agent", "run", "--job-id", "j-1", "--storage", "junk-bundle", "t.py"], 65, ["code bundle"]),
        (["local", "--checkpoint-dir", "", "t.py"], 64, ["--checkpoint-dir is empty"]),
        (["s3", "presign", "s3://bucket/key", "--expires", "1ms"], 64, ["--expires", "at least 1s"]),
        (["s3", "presign", "s3://bucket/key", "--expires", "0.5"], 64, ["--expires", "at least 1s"]),
    ],
)
def test_agent_and_option_failures_say_why_on_stderr(
    tmp_path: Path, args: list[str], code: int, words: list[str]
) -> None:
    (tmp_path / "t.py").write_text("print('ran')\n")
    (tmp_path / "store").mkdir()
    (tmp_path / "junk-bundle").mkdir()
    (tmp_path / "junk-bundle" / "code.tar.gz").write_bytes(b"not a tarball at all" * 10)
    result = run_cli(*args, cwd=tmp_path)
    clear_error(result, code, *words)
    assert "ran" not in result.stdout


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[checkpoint]\ndir = ""\n', "checkpoint.dir"),
        ('[storage]\nuri = "gs://bucket/runs"\n', "storage.uri"),
    ],
)
def test_config_paths_that_would_mean_something_else_are_refused(tmp_path: Path, body: str, key: str) -> None:
    (tmp_path / ".runctl.toml").write_text(body)
    clear_error(run_cli("config", "validate", cwd=tmp_path), 78, key)
