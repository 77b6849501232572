"""The one error hierarchy of runctl, and its exit codes.

Every failure runctl reports is a :class:`RunctlError`. Each carries what failed (``operation``),
on which resource (``resource_id``, ``resource_state``) when known, whether trying again can help
(``retryable``), a ``hint`` the user can act on, and a stable ``exit_code``.

Exit codes follow sysexits(3) where a code fits, so scripts can tell "you typed it wrong" from
"the cloud said no" from "try later". For ``runctl local`` and ``train --wait`` the training
script's own exit code passes through unchanged; runctl's own failures happen before the script
starts (or after it ended) and use the codes below. 130 and 143 mean runctl was stopped by
SIGINT / SIGTERM and shut the job down gracefully. The table is repeated in
docs/reference/exit-codes.md (``tests/test_docs.py`` keeps the two equal).

Secrets never travel in an error: the message and hint are redacted
(:func:`runctl.core.secrets.redact`) when the error is made, and again when it is shown
(``str``, :meth:`RunctlError.to_dict`), so a secret registered in between is masked too.

Library errors (boto3, httpx) are classified once, at the provider boundary, into these classes:
nothing above the providers ever sees a ``botocore`` exception.
"""

from __future__ import annotations

import signal
from enum import IntEnum
from typing import TypedDict, Unpack

__all__ = [
    "AuthError",
    "BudgetError",
    "CapacityError",
    "CloudProviderError",
    "ConfigError",
    "ErrorDetails",
    "ExitCode",
    "LedgerCorruptError",
    "NotFoundError",
    "QuotaError",
    "ResourceError",
    "RetryExhaustedError",
    "RunctlError",
    "StateDirError",
    "StateError",
    "ThrottledError",
    "UsageError",
    "ValidationError",
    "is_retryable",
]

from runctl.core.secrets import redact


class ExitCode(IntEnum):
    """Exit codes of the ``runctl`` command. Stable: scripts may depend on them."""

    OK = 0
    FAILURE = 1  # a job ran and failed, with no code of its own (e.g. killed by a signal)
    USAGE = 64  # bad command-line arguments
    VALIDATION = 65  # input data is wrong (a value, a file's content, an id)
    NOT_FOUND = 66  # a file, job, checkpoint or resource that must exist does not
    UNAVAILABLE = 69  # the cloud provider refused or failed (capacity, outage)
    INTERNAL = 70  # a bug in runctl: please report it
    CANT_CREATE = 73  # cannot create a file or directory (state dir, checkpoint dir)
    STATE = 74  # the ledger (state database) is unreadable, corrupt or too new
    RETRY_EXHAUSTED = 75  # a retryable operation kept failing until its attempts/deadline ran out
    PERMISSION = 77  # credentials missing or refused
    CONFIG = 78  # the configuration is invalid
    BUDGET = 79  # a budget or cost limit forbids the action
    RESOURCE = 80  # a cloud resource could not be brought to the state asked for
    TIMEOUT = 124  # the job ran past its max duration (as coreutils `timeout`)
    SIGINT = 128 + signal.SIGINT  # 130
    SIGTERM = 128 + signal.SIGTERM  # 143


class ErrorDetails(TypedDict, total=False):
    """The keyword arguments every :class:`RunctlError` takes, passed on by its subclasses."""

    hint: str | None
    operation: str | None
    resource_id: str | None
    resource_state: str | None
    retryable: bool | None
    exit_code: ExitCode | None


class RunctlError(Exception):
    """Base of every error runctl raises on purpose.

    ``str(err)`` is the one-line message; ``err.hint`` says what to do about it.
    """

    exit_code: ExitCode = ExitCode.FAILURE
    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        operation: str | None = None,
        resource_id: str | None = None,
        resource_state: str | None = None,
        retryable: bool | None = None,
        exit_code: ExitCode | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.hint = redact(hint) if hint else hint
        self.operation = operation
        self.resource_id = resource_id
        self.resource_state = resource_state
        self.retryable = self.default_retryable if retryable is None else retryable
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return redact(self.message)

    def to_dict(self) -> dict[str, object]:
        """The error as plain data, for ``--output json`` and JSON logs."""
        return {
            "error": type(self).__name__,
            "message": redact(self.message),
            "hint": redact(self.hint) if self.hint else self.hint,
            "operation": self.operation,
            "resource_id": self.resource_id,
            "resource_state": self.resource_state,
            "retryable": self.retryable,
            "exit_code": int(self.exit_code),
        }


class UsageError(RunctlError):
    """A command-line argument is missing, unknown or malformed."""

    exit_code = ExitCode.USAGE


class ValidationError(RunctlError):
    """A value given to runctl is not acceptable (an id, a path, a number out of range)."""

    exit_code = ExitCode.VALIDATION


class NotFoundError(RunctlError):
    """Something that must exist does not: a script, a job, a checkpoint, a resource."""

    exit_code = ExitCode.NOT_FOUND


class ConfigError(RunctlError):
    """The configuration cannot be read or does not validate. Names file, key path and fix."""

    exit_code = ExitCode.CONFIG

    def __init__(
        self, message: str, *, path: str | None = None, key: str | None = None, **kw: Unpack[ErrorDetails]
    ) -> None:
        super().__init__(message, **kw)
        self.path = path
        self.key = key


class StateError(RunctlError):
    """The ledger or the state directory cannot be used."""

    exit_code = ExitCode.STATE


class StateDirError(StateError):
    """The state directory cannot be created or written."""

    exit_code = ExitCode.CANT_CREATE


class LedgerCorruptError(StateError):
    """The ledger file is not a valid database. It is backed up, never silently recreated."""


class CloudProviderError(RunctlError):
    """A cloud API call failed. ``retryable`` says whether the same call may succeed later."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, provider: str | None = None, **kw: Unpack[ErrorDetails]) -> None:
        super().__init__(message, **kw)
        self.provider = provider


class ThrottledError(CloudProviderError):
    """The provider asked us to slow down (rate limit, 429, 5xx). Always retryable."""

    default_retryable = True


class CapacityError(CloudProviderError):
    """The provider has no capacity for this request here; another placement or market may."""


class AuthError(CloudProviderError):
    """Credentials are missing, expired or refused. Never retried."""

    exit_code = ExitCode.PERMISSION


class QuotaError(CloudProviderError):
    """An account limit (vCPU quota, instance count) forbids the request. Never retried."""


class ResourceError(RunctlError):
    """A resource could not be created, changed or released as asked."""

    exit_code = ExitCode.RESOURCE


class RetryExhaustedError(RunctlError):
    """A retryable operation failed on every attempt; ``last_error`` is the final failure."""

    exit_code = ExitCode.RETRY_EXHAUSTED

    def __init__(
        self, message: str, *, attempts: int, last_error: BaseException, **kw: Unpack[ErrorDetails]
    ) -> None:
        super().__init__(message, **kw)
        self.attempts = attempts
        self.last_error = last_error


class BudgetError(RunctlError):
    """A budget or cost limit forbids the action. Says the figures and the override."""

    exit_code = ExitCode.BUDGET


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same operation again may succeed."""
    return isinstance(exc, RunctlError) and exc.retryable


class UnsupportedError(ValidationError):
    """The provider cannot do what was asked (stop a RunPod-style container machine, stop a spot
    instance): refused before anything is created or changed."""
