"""Short-lived storage credentials for pods (runctl.storage.credentials), against moto's STS."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from runctl.core import secrets
from runctl.core.config import load_config
from runctl.core.errors import ConfigError
from runctl.storage.credentials import (
    MARGIN_S,
    STS_MAX_S,
    STS_MIN_S,
    credentials_lifetime,
    job_storage_policy,
    scoped_credentials,
)
from tests.support.fault_proxy import FaultProxy


@pytest.mark.parametrize(
    ("max_duration", "expected"),
    [(3600.0, 3600 + MARGIN_S), (0.5, max(STS_MIN_S, MARGIN_S + 1)), (STS_MAX_S - MARGIN_S, STS_MAX_S)],
)
def test_lifetime_is_the_max_duration_plus_a_margin(max_duration: float, expected: int) -> None:
    assert credentials_lifetime(max_duration, long_lived_allowed=False) == expected


@pytest.mark.parametrize("max_duration", [None, STS_MAX_S - MARGIN_S + 1, 7 * 86400.0])
def test_a_job_that_may_outlive_sts_is_refused_unless_long_lived_is_allowed(
    max_duration: float | None,
) -> None:
    with pytest.raises(ConfigError) as refused:
        credentials_lifetime(max_duration, long_lived_allowed=False)
    assert refused.value.key == "runpod.long_lived_credentials"
    assert "long_lived_credentials = true" in (refused.value.hint or "")
    assert "--max-duration" in (refused.value.hint or "")
    assert credentials_lifetime(max_duration, long_lived_allowed=True) is None


def test_the_config_key_exists_and_defaults_to_refusing() -> None:
    assert load_config(environ={}).config.runpod.long_lived_credentials is False
    on = load_config(environ={"RUNCTL_RUNPOD__LONG_LIVED_CREDENTIALS": "true"})
    assert on.config.runpod.long_lived_credentials is True


def test_the_policy_allows_only_the_jobs_prefix() -> None:
    policy = job_storage_policy("s3://runs/team/runctl", "j-1234abcd", region="us-gov-west-1")
    objects, listing = policy["Statement"]
    assert objects["Resource"] == "arn:aws-us-gov:s3:::runs/team/runctl/jobs/j-1234abcd/*"
    assert "s3:ListBucket" not in objects["Action"] and "s3:*" not in json.dumps(policy)
    assert listing["Resource"] == "arn:aws-us-gov:s3:::runs"
    assert listing["Condition"]["StringLikeIfExists"]["s3:prefix"] == [
        "team/runctl/jobs/j-1234abcd/*",
        "team/runctl/jobs/j-1234abcd",
    ]


def test_scoped_credentials_from_moto_sts(fault_proxy: FaultProxy) -> None:
    before = time.time()
    found = scoped_credentials("j-1234abcd", "s3://runs/runctl", 3600 + MARGIN_S, region="us-east-1")
    assert set(found.env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert found.env["AWS_SESSION_TOKEN"]  # temporary: a token comes with them
    assert before + 3600 + MARGIN_S - 120 <= found.expires_at <= time.time() + 3600 + MARGIN_S + 120
    sent = [r for r in fault_proxy.requests if r.action == "GetFederationToken"]
    assert len(sent) == 1
    params = urllib.parse.parse_qs(sent[0].body.decode())
    assert params["DurationSeconds"] == [str(3600 + MARGIN_S)]
    assert params["Name"] == ["runctl-j-1234abcd"]
    assert json.loads(params["Policy"][0]) == job_storage_policy(
        "s3://runs/runctl", "j-1234abcd", region="us-east-1"
    )
    assert secrets.redact(found.env["AWS_SECRET_ACCESS_KEY"]) == "***"  # registered before returned
