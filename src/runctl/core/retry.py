"""One retry policy for every call that may fail transiently (tenacity underneath).

Exponential backoff with *full jitter* (the wait before attempt n+1 is uniform in
``[0, min(max_delay, initial_delay * 2**(n-1))]``), a cap on attempts, and an overall deadline
that is never overshot: a sleep that would end past the deadline is not taken. Only errors whose
``retryable`` flag is true are retried (classification happens once, at the provider boundary);
anything else propagates at once, unchanged. When attempts or deadline run out the last error is
wrapped in :class:`RetryExhaustedError`, keeping its hint.

The presets' numbers are the ``[retry]`` config section (:class:`runctl.core.config.RetryConfig`):
providers build their policies from the loaded config, so a user can make runctl fail fast on
a flaky link or ride out a long outage without code changes.

Each retry is logged (``runctl.retry`` logger, WARNING) and counted in the
``runctl_retries_total`` metric. boto3's own retries are set to a single attempt by the AWS
provider so the two layers never multiply into a retry storm.

tenacity is used instead of a hand loop because it already gets the corner cases right (async,
deadline-aware stop, jittered waits, statistics); this module only fixes the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from runctl.core.errors import RetryExhaustedError, RunctlError, is_retryable

if TYPE_CHECKING:
    from runctl.core.config import RetryConfig

T = TypeVar("T")
log = logging.getLogger("runctl.retry")


def _default_settings() -> RetryConfig:
    from runctl.core.config import RetryConfig

    return RetryConfig()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retryable failure."""

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float | None = 120.0
    name: str = "operation"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("need 0 <= initial_delay <= max_delay")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive")

    @classmethod
    def for_cloud_api(cls, name: str = "cloud API call", settings: RetryConfig | None = None) -> RetryPolicy:
        """Cloud control-plane calls: a few quick tries, then give up within two minutes
        (the ``[retry]`` section's numbers; its defaults when ``settings`` is None)."""
        s = settings or _default_settings()
        return cls(
            max_attempts=s.max_attempts,
            initial_delay=s.initial_delay,
            max_delay=s.max_delay,
            deadline=s.deadline,
            name=name,
        )

    @classmethod
    def for_polling(
        cls, name: str = "poll", deadline: float = 600.0, settings: RetryConfig | None = None
    ) -> RetryPolicy:
        """Waiting for a state (instance running, volume available): many tries, long deadline."""
        s = settings or _default_settings()
        return cls(
            max_attempts=10_000,
            initial_delay=s.poll_interval,
            max_delay=s.poll_max_interval,
            deadline=deadline,
            name=name,
        )

    def backoff(self, attempt: int) -> float:
        """One sample of the wait after failed attempt number ``attempt`` (1-based)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempt
        return self._wait()(state)

    def _wait(self) -> tenacity.wait.wait_base:
        if self.initial_delay == 0:
            # tenacity answers an overflow (attempt > 1024) with max_delay, even for a 0 multiplier
            return tenacity.wait_none()
        return tenacity.wait_random_exponential(multiplier=self.initial_delay, max=self.max_delay)

    def _stop(self) -> tenacity.stop.stop_base:
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
        if self.deadline is not None:
            stop = stop | tenacity.stop_before_delay(self.deadline)
        return stop

    def _kwargs(self, operation: str) -> dict[str, Any]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.2fs: %s",
                operation,
                state.attempt_number,
                self.max_attempts,
                delay,
                error,
                extra={"operation": operation, "attempt": state.attempt_number},
            )
            from runctl.core import metrics

            metrics.RETRIES.labels(operation=operation).inc()

        return {
            "stop": self._stop(),
            "wait": self._wait(),
            "retry": tenacity.retry_if_exception(is_retryable),
            "before_sleep": before_sleep,
            "reraise": False,
        }

    def call(self, fn: Callable[..., T], *args: object, operation: str | None = None, **kw: object) -> T:
        """Call ``fn(*args, **kw)`` under this policy."""
        op = operation or self.name
        try:
            for attempt in tenacity.Retrying(**self._kwargs(op)):
                with attempt:
                    return fn(*args, **kw)
        except tenacity.RetryError as exc:
            raise self._exhausted(op, exc) from exc.last_attempt.exception()
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(
        self, fn: Callable[..., Awaitable[T]], *args: object, operation: str | None = None, **kw: object
    ) -> T:
        """Await ``fn(*args, **kw)`` under this policy."""
        op = operation or self.name
        try:
            async for attempt in tenacity.AsyncRetrying(**self._kwargs(op)):
                with attempt:
                    return await fn(*args, **kw)
        except tenacity.RetryError as exc:
            raise self._exhausted(op, exc) from exc.last_attempt.exception()
        raise AssertionError("unreachable")  # pragma: no cover

    def _exhausted(self, operation: str, exc: tenacity.RetryError) -> RetryExhaustedError:
        last = exc.last_attempt.exception()
        if last is None:  # tenacity retries on exceptions only: the last attempt always raised
            raise AssertionError(f"{operation}: gave up after an attempt that did not fail") from exc
        attempts = exc.last_attempt.attempt_number
        hint = last.hint if isinstance(last, RunctlError) else None
        return RetryExhaustedError(
            f"{operation} still failing after {attempts} attempt(s): {last}",
            attempts=attempts,
            last_error=last,
            operation=operation,
            resource_id=getattr(last, "resource_id", None),
            hint=hint or "the provider may be overloaded; try again in a few minutes",
        )
