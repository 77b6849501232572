"""Configuration: validation errors that name file, key and fix; discovery and layering; secrets;
the `init` template; and a property test that any valid config survives a TOML round trip."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from runctl.core.config import Config, load_config, parse_duration, redacted_dump
from runctl.core.errors import ConfigError
from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.conftest import REPO, run_cli

SECRET = "rp_SECRET_do_not_print_9f8e7d"

# (id, file body, key path named in the error, words the message must contain)
BAD_FILES = [
    ("malformed-toml", "[local\ngrace_period = 3\n", None, ["not valid TOML", "line"]),
    ("unquoted-string", "[local]\npython = /usr/bin/python3\n", None, ["not valid TOML"]),
    ("wrong-type-bool", '[local]\nuse_uv = "maybe"\n', "local.use_uv", ["boolean"]),
    ("wrong-type-int", '[aws]\nroot_volume_gb = "big"\n', "aws.root_volume_gb", ["integer"]),
    ("wrong-type-list", '[aws]\nsecurity_group_ids = "sg-1"\n', "aws.security_group_ids", ["list"]),
    (
        "negative-interval",
        "[monitoring]\nheartbeat_interval = -5\n",
        "monitoring.heartbeat_interval",
        ["greater than 0"],
    ),
    ("negative-duration-str", '[local]\ngrace_period = "-5s"\n', "local.grace_period", ["not a duration"]),
    ("zero-duration", "[local]\nmax_duration = 0\n", "local.max_duration", ["greater than 0"]),
    ("nan-duration", "[local]\ngrace_period = nan\n", "local.grace_period", ["finite"]),
    ("inf-duration", "[local]\nmax_duration = inf\n", "local.max_duration", ["finite"]),
    ("bad-unit", '[local]\ngrace_period = "5 weeks"\n', "local.grace_period", ["30s", "5m"]),
    ("negative-count", "[checkpoint]\nkeep_last_n = -1\n", "checkpoint.keep_last_n", ["greater than 0"]),
    (
        "negative-rate",
        "[local]\nrate_usd_per_hour = -0.5\n",
        "local.rate_usd_per_hour",
        ["greater than or equal to 0"],
    ),
    ("port-range", "[monitoring]\nmetrics_port = 70000\n", "monitoring.metrics_port", ["65535"]),
    ("fraction-range", "[cost]\nwarn_at = 1.5\n", "cost.warn_at", ["less than or equal to 1"]),
    ("bad-choice", '[runpod]\ncloud_type = "cheap"\n', "runpod.cloud_type", ["secure", "community"]),
    ("unknown-section", "[locla]\ngrace_period = 3\n", "locla", ["unknown section", "did you mean 'local'"]),
    (
        "unknown-key",
        "[local]\ngrace_perod = 3\n",
        "local.grace_perod",
        ["unknown key", "did you mean 'grace_period'"],
    ),
    ("section-not-a-table", "local = 5\n", "local", ["dictionary"]),
    ("inf-rate", "[local]\nrate_usd_per_hour = inf\n", "local.rate_usd_per_hour", ["finite"]),
    ("inf-budget", "[cost]\nbudget_usd = inf\n", "cost.budget_usd", ["finite"]),
    ("nan-budget", "[cost]\nmax_cost_usd = nan\n", "cost.max_cost_usd", ["finite"]),
    ("inf-spot-price", "[aws]\nspot_max_price = inf\n", "aws.spot_max_price", ["finite"]),
    ("inf-hourly", "[cost]\nmax_hourly_usd = inf\n", "cost.max_hourly_usd", ["finite"]),
    ("endless-duration", '[local]\nmax_duration = "99999999d"\n', "local.max_duration", ["3650d"]),
]


def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


@pytest.mark.parametrize(("body", "key", "words"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_file_names_file_key_and_fix(
    tmp_path: Path, body: str, key: str | None, words: list[str]
) -> None:
    config_file = write(tmp_path / "proj" / ".runctl.toml", body)
    with pytest.raises(ConfigError) as info:
        load_config(cwd=config_file.parent, environ={})
    err = info.value
    message = str(err)
    assert str(config_file) in message
    assert err.path == str(config_file)
    assert err.key == key
    if key:
        assert key in message
    for word in words:
        assert word in message, message
    assert err.hint
    assert int(err.exit_code) == 78


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    config_file = write(
        tmp_path / "c.toml", '[local]\nuse_uv = "x"\ngrace_period = -1\n[cost]\nwarn_at = 9\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_file, environ={})
    message = str(info.value)
    assert "3 problems" in message
    for key in ("local.use_uv", "local.grace_period", "cost.warn_at"):
        assert key in message


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        (
            "RUNCTL_LOCAL__GRACE_PERIOD",
            "abc",
            ["environment variable RUNCTL_LOCAL__GRACE_PERIOD", "local.grace_period", "not a duration"],
        ),
        ("RUNCTL_LOCAL__USE_UV", "perhaps", ["RUNCTL_LOCAL__USE_UV", "local.use_uv"]),
        ("RUNCTL_LOCAL__RATE_USD_PER_HOUR", "inf", ["RUNCTL_LOCAL__RATE_USD_PER_HOUR", "finite"]),
        ("RUNCTL_COST__BUDGET_USD", "NaN", ["RUNCTL_COST__BUDGET_USD", "finite"]),
        ("RUNCTL_AWS__SPOT_MAX_PRICE", "Infinity", ["RUNCTL_AWS__SPOT_MAX_PRICE", "finite"]),
        (
            "RUNCTL_LOCAL__GRACE_PERIOT",
            "5",
            ["RUNCTL_LOCAL__GRACE_PERIOT", "unknown key local.grace_periot", "did you mean 'grace_period'"],
        ),
        (
            "RUNCTL_LOCL__GRACE_PERIOD",
            "5",
            ["RUNCTL_LOCL__GRACE_PERIOD", "unknown config section", "did you mean 'local'"],
        ),
    ],
)
def test_bad_environment_override_names_the_variable(
    tmp_path: Path, var: str, value: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={var: value})
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert info.value.hint
    assert info.value.path is None


def test_cli_config_error_exits_78_without_traceback_and_runs_nothing(
    tmp_path: Path, isolated_env: Path
) -> None:
    write(tmp_path / ".runctl.toml", "[local]\ngrace_perod = 3\n")
    marker = tmp_path / "ran"
    script = write(tmp_path / "touch.py", f"open({str(marker)!r}, 'w').close()\n")
    for args in (["config", "validate"], ["config", "show"], ["local", str(script)]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 78, (args, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error:") and "local.grace_perod" in lines[0]
        assert "did you mean 'grace_period'" in lines[0]
        assert lines[-1].startswith("hint:")
    assert not marker.exists()
    ledger_path = isolated_env / LEDGER_FILE
    if ledger_path.exists():
        with Ledger(ledger_path) as ledger:
            assert ledger.list_jobs() == []


def test_cli_bad_env_override_exits_78(tmp_path: Path) -> None:
    result = run_cli("config", "show", cwd=tmp_path, env={"RUNCTL_LOCAL__GRACE_PERIOD": "abc"})
    assert result.returncode == 78
    assert "RUNCTL_LOCAL__GRACE_PERIOD" in result.stderr
    assert "Traceback" not in result.stderr


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0.25, 0.25),
        ("30", 30.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        (" 1.5 m ", 90.0),
    ],
)
def test_durations_parse(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [0, -1, "0s", "-3s", "abc", "5 weeks", "", True, None, [5], math.nan, math.inf, "nan", "inf"]
)
def test_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


# -- discovery and layering ----------------------------------------------------------------------


def test_defaults_when_no_file(tmp_path: Path) -> None:
    loaded = load_config(cwd=tmp_path, environ={})
    assert loaded.files == []
    assert loaded.env_keys == []
    assert loaded.config == Config()
    assert loaded.config.local.grace_period == 30.0


def test_project_config_is_found_upward(tmp_path: Path) -> None:
    project = write(tmp_path / "proj" / ".runctl.toml", '[local]\ngrace_period = "12s"\n')
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    loaded = load_config(cwd=deep, environ={})
    assert loaded.files == [project]
    assert loaded.config.local.grace_period == 12.0


def test_nearest_project_config_wins(tmp_path: Path) -> None:
    write(tmp_path / ".runctl.toml", "[local]\ngrace_period = 1\n")
    inner = write(tmp_path / "inner" / ".runctl.toml", "[local]\ngrace_period = 2\n")
    loaded = load_config(cwd=inner.parent, environ={})
    assert loaded.files == [inner]
    assert loaded.config.local.grace_period == 2.0


def test_user_config_is_layered_under_project_and_env_over_both(tmp_path: Path) -> None:
    user = write(
        tmp_path / "config-home" / "config.toml",  # RUNCTL_CONFIG_HOME (isolated_env)
        '[local]\ngrace_period = 10\nuse_uv = false\n[aws]\nregion = "eu-west-1"\n',
    )
    project = write(tmp_path / "proj" / ".runctl.toml", "[local]\ngrace_period = 20\n[cost]\nwarn_at = 0.5\n")
    loaded = load_config(cwd=project.parent, environ={})
    assert loaded.files == [user, project]
    config = loaded.config
    assert config.local.grace_period == 20.0  # project over user
    assert config.local.use_uv is False  # user key the project did not set survives
    assert config.aws.region == "eu-west-1"
    assert config.cost.warn_at == 0.5

    env = {
        "RUNCTL_LOCAL__GRACE_PERIOD": "5s",
        "RUNCTL_AWS__SECURITY_GROUP_IDS": '["sg-1", "sg-2"]',
        "RUNCTL_STATE_DIR": "/ignored/not/a/config/key",
        "OTHER": "x",
    }
    loaded = load_config(cwd=project.parent, environ=env)
    assert loaded.config.local.grace_period == 5.0
    assert loaded.config.aws.security_group_ids == ["sg-1", "sg-2"]
    assert loaded.config.aws.region == "eu-west-1"
    assert loaded.env_keys == ["RUNCTL_AWS__SECURITY_GROUP_IDS", "RUNCTL_LOCAL__GRACE_PERIOD"]


def test_explicit_config_replaces_discovery(tmp_path: Path) -> None:
    write(tmp_path / ".runctl.toml", "[local]\ngrace_period = 1\n")
    explicit = write(tmp_path / "elsewhere.toml", "[local]\ngrace_period = 7\n")
    loaded = load_config(explicit, cwd=tmp_path, environ={})
    assert loaded.files == [explicit]
    assert loaded.config.local.grace_period == 7.0


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", environ={})
    assert "nope.toml" in str(info.value)
    assert "runctl init" in (info.value.hint or "")


def test_bad_user_config_is_named(tmp_path: Path) -> None:
    user = write(tmp_path / "config-home" / "config.toml", "[cost]\nbudget_usd = -3\n")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={})
    assert str(user) in str(info.value)
    assert info.value.key == "cost.budget_usd"


def test_cli_discovers_config_upward_and_via_option(tmp_path: Path) -> None:
    write(tmp_path / ".runctl.toml", "[local]\ngrace_period = 12\n")
    deep = tmp_path / "x" / "y"
    deep.mkdir(parents=True)
    shown = json.loads(run_cli("config", "show", "-o", "json", cwd=deep).stdout)
    assert shown["config"]["local"]["grace_period"] == 12.0
    assert shown["files"] == [str(tmp_path / ".runctl.toml")]
    other = write(tmp_path / "other.toml", "[local]\ngrace_period = 3\n")
    shown = json.loads(run_cli("--config", str(other), "config", "show", "-o", "json", cwd=deep).stdout)
    assert shown["config"]["local"]["grace_period"] == 3.0
    paths = json.loads(run_cli("config", "path", "-o", "json", cwd=deep).stdout)
    assert paths["project"] == str(tmp_path / ".runctl.toml")
    assert paths["user"] == str(tmp_path / "config-home" / "config.toml")


# -- secrets -------------------------------------------------------------------------------------


def test_secret_is_masked_in_repr_and_dumps(tmp_path: Path) -> None:
    config_file = write(tmp_path / ".runctl.toml", f'[runpod]\napi_key = "{SECRET}"\n')
    config = load_config(cwd=config_file.parent, environ={}).config
    assert config.runpod.api_key is not None
    assert config.runpod.api_key.get_secret_value() == SECRET  # usable by the provider
    for text in (
        repr(config),
        str(config),
        repr(config.runpod),
        str(config.model_dump()),
        json.dumps(config.model_dump(mode="json")),
        json.dumps(redacted_dump(config)),
    ):
        assert SECRET not in text
    assert redacted_dump(config)["runpod"]["api_key"] == "**********"


@pytest.mark.parametrize(
    "body",
    [
        f'[runpod]\napi_key = "{SECRET}"\n',
        f'[runpod]\napi_key = "{SECRET}"\ngpu_count = -1\n',  # an error elsewhere in the section
        f'[runpod]\napi_key = ["{SECRET}"]\n',  # wrong type for the secret itself
        f'[[runpod]]\napi_key = "{SECRET}"\n',  # array of tables by mistake
        f'runpod = "{SECRET}"\n',  # the key written as the section's value
        f'[runpod]\napi_kee = "{SECRET}"\n',  # a misspelt secret key
    ],
    ids=["valid", "error-beside", "wrong-type", "array-of-tables", "section-value", "misspelt"],
)
def test_secret_never_printed_by_config_commands(tmp_path: Path, body: str) -> None:
    write(tmp_path / ".runctl.toml", body)
    for args in (["config", "show"], ["config", "show", "-o", "json"], ["config", "validate"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode in (0, 78)
        assert SECRET not in result.stdout
        assert SECRET not in result.stderr
        assert "Traceback" not in result.stderr


def test_secret_from_environment_is_masked(tmp_path: Path) -> None:
    result = run_cli("config", "show", cwd=tmp_path, env={"RUNCTL_RUNPOD__API_KEY": SECRET})
    assert result.returncode == 0
    assert "RUNCTL_RUNPOD__API_KEY" in result.stdout  # where it came from is shown, not what
    assert SECRET not in result.stdout + result.stderr


# -- the init template ---------------------------------------------------------------------------


def test_init_template_loads_and_every_documented_key_is_valid(tmp_path: Path) -> None:
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / ".runctl.toml"
    loaded = load_config(cwd=tmp_path, environ={})
    assert loaded.files == [written]
    assert loaded.config == Config()  # everything commented out: the defaults
    assert written.read_text() == (REPO / "src" / "runctl" / "templates" / "runctl.toml").read_text()

    # uncomment every "# key = value" line: the result must still validate (no stale key names)
    uncommented, count = re.subn(r"(?m)^# (\w+ = )", r"\1", written.read_text())
    assert count >= 20
    write(written, uncommented)
    config = load_config(cwd=tmp_path, environ={}).config
    assert config.local.max_duration == 12 * 3600
    assert config.checkpoint.keep_last_n == 3
    assert run_cli("config", "validate", cwd=tmp_path).returncode == 0


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    existing = write(tmp_path / ".runctl.toml", "# mine\n")
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 65
    assert "--force" in result.stderr
    assert existing.read_text() == "# mine\n"
    assert run_cli("init", "--force", cwd=tmp_path).returncode == 0
    assert "[local]" in existing.read_text()


# -- property: valid configs round-trip through TOML --------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_bucket = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)  # a valid S3 bucket name
_seconds = st.floats(min_value=0.001, max_value=1e7, allow_nan=False, allow_infinity=False)
_positive = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


def _section(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=optional)


configs = st.fixed_dictionaries(
    {},
    optional={
        "local": _section(
            grace_period=_seconds,
            max_duration=_seconds,
            python=_text,
            use_uv=st.booleans(),
            rate_usd_per_hour=st.floats(min_value=0, max_value=1e4),
        ),
        "checkpoint": _section(
            dir=_text.filter(lambda s: "\0" not in s and s.strip()).map(Path),  # blank: refused
            keep_last_n=st.integers(1, 10**6),
            resume=st.booleans(),
        ),
        "monitoring": _section(
            metrics_port=st.integers(1, 65535),
            log_format=st.sampled_from(["text", "json"]),
            heartbeat_interval=_seconds,
            pushgateway_url=_text,
        ),
        "cost": _section(
            budget_usd=_positive,
            budget_period=st.sampled_from(["day", "week", "month"]),
            max_hourly_usd=_positive,
            warn_at=st.floats(min_value=0.01, max_value=1.0),
            price_stale_days=st.integers(1, 3650),
        ),
        "aws": _section(
            region=st.from_regex(r"[a-z]{2}(-[a-z]{1,9}){1,3}-[0-9]{1,2}", fullmatch=True),
            use_spot=st.booleans(),
            spot_max_price=_positive,
            security_group_ids=st.lists(_text, max_size=3),
            root_volume_gb=st.integers(1, 16384),
            s3_bucket=_bucket,
        ),
        "runpod": _section(
            api_key=_text,
            gpu_count=st.integers(1, 8),
            cloud_type=st.sampled_from(["secure", "community", "all"]),
            volume_gb=st.integers(0, 10**5),
        ),
    },
)


def _to_toml_data(config: Config) -> dict[str, Any]:
    """The config as TOML-able data: secrets revealed, paths as strings, unset keys left out."""

    def plain(value: Any) -> Any:
        if hasattr(value, "get_secret_value"):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(config.model_dump())


@settings(max_examples=60, deadline=None)
@given(data=configs)
def test_valid_configs_round_trip_through_toml(data: dict[str, Any]) -> None:
    original = Config.model_validate(data)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_text(tomli_w.dumps(_to_toml_data(original)))
        loaded = load_config(path, environ={})
    assert loaded.config == original
    for section, body in data.items():  # and every value given is the value read back
        for key, value in body.items():
            got = getattr(getattr(loaded.config, section), key)
            got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
            assert got == value, (section, key)
