"""The error hierarchy: exit codes, retryability, and what every error carries."""

from __future__ import annotations

import pytest

from runctl.core import errors
from runctl.core.errors import (
    AuthError,
    BudgetError,
    CapacityError,
    CloudProviderError,
    ConfigError,
    ExitCode,
    LedgerCorruptError,
    NotFoundError,
    QuotaError,
    ResourceError,
    RetryExhaustedError,
    RunctlError,
    StateDirError,
    StateError,
    ThrottledError,
    UsageError,
    ValidationError,
    is_retryable,
)

EXPECTED_CODES = [
    (UsageError, 64),
    (ValidationError, 65),
    (NotFoundError, 66),
    (CloudProviderError, 69),
    (CapacityError, 69),
    (QuotaError, 69),
    (ThrottledError, 69),
    (StateDirError, 73),
    (StateError, 74),
    (LedgerCorruptError, 74),
    (AuthError, 77),
    (ConfigError, 78),
    (BudgetError, 79),
    (ResourceError, 80),
]


@pytest.mark.parametrize(("cls", "code"), EXPECTED_CODES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_error_class_has_its_documented_exit_code(cls: type[RunctlError], code: int) -> None:
    err = cls("boom")
    assert isinstance(err, RunctlError)
    assert int(err.exit_code) == code


def test_exit_codes_are_distinct_and_signal_codes_follow_the_shell_convention() -> None:
    values = [int(c) for c in ExitCode]
    assert len(values) == len(set(values))
    assert ExitCode.SIGINT == 130
    assert ExitCode.SIGTERM == 143
    assert ExitCode.TIMEOUT == 124
    # runctl's own codes never collide with "the script exited 1" or the signal range
    own = [c for c in ExitCode if c not in (ExitCode.OK, ExitCode.FAILURE)]
    assert all(64 <= c <= 80 or c >= 124 for c in own)


def test_retry_exhausted_has_its_own_code() -> None:
    last = ThrottledError("slow down", hint="wait")
    err = RetryExhaustedError("gave up", attempts=3, last_error=last)
    assert err.exit_code == ExitCode.RETRY_EXHAUSTED == 75
    assert err.attempts == 3
    assert err.last_error is last
    assert not err.retryable


def test_only_throttling_is_retryable_by_default() -> None:
    assert ThrottledError("x").retryable
    assert is_retryable(ThrottledError("x"))
    for cls in (CapacityError, AuthError, QuotaError, ValidationError, ConfigError, ResourceError):
        assert not cls("x").retryable
        assert not is_retryable(cls("x"))
    # the flag can be set per instance, both ways
    assert is_retryable(CapacityError("x", retryable=True))
    assert not is_retryable(ThrottledError("x", retryable=False))


def test_foreign_exceptions_are_never_retryable() -> None:
    assert not is_retryable(TimeoutError("t"))
    assert not is_retryable(OSError("o"))
    assert not is_retryable(KeyboardInterrupt())


def test_an_error_carries_what_failed_where_and_the_fix() -> None:
    err = ResourceError(
        "could not stop i-123",
        hint="stop it in the console",
        operation="terminate instance",
        resource_id="r-1",
        resource_state="running",
        retryable=True,
    )
    assert str(err) == "could not stop i-123"
    assert err.to_dict() == {
        "error": "ResourceError",
        "message": "could not stop i-123",
        "hint": "stop it in the console",
        "operation": "terminate instance",
        "resource_id": "r-1",
        "resource_state": "running",
        "retryable": True,
        "exit_code": 80,
    }


def test_exit_code_can_be_overridden_per_instance() -> None:
    err = ValidationError("x", exit_code=ExitCode.NOT_FOUND)
    assert err.exit_code == ExitCode.NOT_FOUND
    assert ValidationError("y").exit_code == ExitCode.VALIDATION  # the class default is untouched


def test_config_error_names_file_and_key() -> None:
    err = ConfigError("bad", path="/p/.runctl.toml", key="local.grace_period", hint="fix it")
    assert (err.path, err.key, err.hint) == ("/p/.runctl.toml", "local.grace_period", "fix it")
    assert err.exit_code == 78


def test_cloud_errors_name_their_provider() -> None:
    err = CapacityError("no g5 in us-east-1a", provider="aws", resource_id="r-9")
    assert err.provider == "aws"
    assert err.resource_id == "r-9"


def test_state_dir_and_corrupt_ledger_are_state_errors() -> None:
    assert issubclass(StateDirError, StateError)
    assert issubclass(LedgerCorruptError, StateError)
    # the public module exposes the hierarchy under runctl.errors too
    import runctl

    assert runctl.errors.RunctlError is errors.RunctlError
    assert runctl.RunctlError is RunctlError
