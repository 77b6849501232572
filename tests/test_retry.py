"""RetryPolicy: backoff bounds, what is retried, attempts and deadline, logging and metrics."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from runctl.core.errors import (
    AuthError,
    CapacityError,
    RetryExhaustedError,
    ThrottledError,
    ValidationError,
)
from runctl.core.retry import RetryPolicy

_op_counter = itertools.count()


def unique_op(prefix: str) -> str:
    """A fresh operation label, so metric deltas of different tests never mix."""
    return f"{prefix}-{next(_op_counter)}-{time.monotonic_ns()}"


def retries_metric(operation: str) -> float:
    return REGISTRY.get_sample_value("runctl_retries_total", {"operation": operation}) or 0.0


class Flaky:
    """Fails with the given errors in order, then returns ``"ok"``; records each call's time."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[float] = []

    def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


FAST = {"initial_delay": 0.001, "max_delay": 0.002}


@settings(max_examples=300, deadline=None)
@given(
    initial=st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=10.0)),
    extra=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=2000),
)
def test_backoff_is_full_jitter_within_the_exponential_cap(
    initial: float, extra: float, attempt: int
) -> None:
    policy = RetryPolicy(initial_delay=initial, max_delay=initial + extra)
    try:
        cap = min(policy.max_delay, math.ldexp(initial, attempt - 1))  # initial * 2**(n-1)
    except OverflowError:
        cap = policy.max_delay
    delay = policy.backoff(attempt)
    assert 0.0 <= delay <= cap * (1 + 1e-9) + 1e-12


def test_backoff_is_jittered_not_fixed() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=100.0)
    samples = {policy.backoff(5) for _ in range(50)}
    assert len(samples) > 10  # full jitter: many distinct values
    assert max(samples) <= 16.0


@settings(max_examples=60, deadline=None)
@given(max_attempts=st.integers(min_value=1, max_value=6), failures=st.integers(min_value=0, max_value=8))
def test_attempts_are_bounded(max_attempts: int, failures: int) -> None:
    fn = Flaky(*(ThrottledError(f"throttled {i}") for i in range(failures)))
    policy = RetryPolicy(max_attempts=max_attempts, initial_delay=0.0, max_delay=0.0, deadline=None)
    if failures < max_attempts:
        assert policy.call(fn, operation=unique_op("bounded")) == "ok"
        assert len(fn.calls) == failures + 1
    else:
        with pytest.raises(RetryExhaustedError) as info:
            policy.call(fn, operation=unique_op("bounded"))
        assert len(fn.calls) == max_attempts
        assert info.value.attempts == max_attempts


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("bad id"),
        AuthError("expired"),
        CapacityError("none left"),
        OSError("disk"),
        KeyError("k"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_propagate_at_once_unchanged(error: BaseException) -> None:
    fn = Flaky(error, ThrottledError("never reached"))
    with pytest.raises(type(error)) as info:
        RetryPolicy(**FAST).call(fn, operation=unique_op("nonretry"))
    assert info.value is error
    assert len(fn.calls) == 1


def test_retryable_flag_on_any_runctl_error_makes_it_retried() -> None:
    fn = Flaky(CapacityError("try another zone", retryable=True))
    assert RetryPolicy(**FAST).call(fn, operation=unique_op("flag")) == "ok"
    assert len(fn.calls) == 2


def test_exhausted_error_keeps_the_last_error_and_its_hint() -> None:
    errors = [ThrottledError(f"throttled #{i}", hint=f"hint {i}", resource_id="r-42") for i in range(3)]
    fn = Flaky(*errors)
    with pytest.raises(RetryExhaustedError) as info:
        RetryPolicy(max_attempts=3, **FAST).call(fn, operation="describe things")
    err = info.value
    assert err.last_error is errors[-1]
    assert err.__cause__ is errors[-1]
    assert err.hint == "hint 2"
    assert err.attempts == 3
    assert err.operation == "describe things"
    assert err.resource_id == "r-42"
    assert "describe things" in str(err) and "throttled #2" in str(err)
    assert int(err.exit_code) == 75


def test_exhausted_error_without_a_hint_gets_a_generic_one() -> None:
    fn = Flaky(ThrottledError("a"), ThrottledError("b"))
    with pytest.raises(RetryExhaustedError) as info:
        RetryPolicy(max_attempts=2, **FAST).call(fn)
    assert info.value.hint
    assert "try again" in info.value.hint


def test_deadline_is_never_overshot_by_a_sleep(caplog: pytest.LogCaptureFixture) -> None:
    """With a 0.5 s deadline and effectively unlimited attempts, no planned sleep ends past it."""
    deadline = 0.5
    fn = Flaky(*(ThrottledError(f"t{i}") for i in range(100_000)))
    policy = RetryPolicy(max_attempts=100_000, initial_delay=0.02, max_delay=0.1, deadline=deadline)
    caplog.set_level(logging.WARNING, logger="runctl.retry")
    started = time.monotonic()
    with pytest.raises(RetryExhaustedError) as info:
        policy.call(fn, operation=unique_op("deadline"))
    elapsed = time.monotonic() - started
    # far fewer attempts than allowed: the deadline, not max_attempts, stopped it
    assert 2 <= info.value.attempts == len(fn.calls) < 1000
    delays = [float(re.search(r"retrying in ([\d.]+)s", r.getMessage()).group(1)) for r in caplog.records]
    assert len(delays) == len(fn.calls) - 1
    for call_time, delay in zip(fn.calls, delays, strict=False):
        # each sleep was planned to end before the deadline (measured from the first call)
        assert (call_time - fn.calls[0]) + delay < deadline + 0.01
    # and the whole call returned within a bound (generous: a loaded machine may oversleep)
    assert elapsed < deadline + 2.0


def test_each_retry_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    op = unique_op("logged")
    before = retries_metric(op)
    fn = Flaky(ThrottledError("slow down 1"), ThrottledError("slow down 2"))
    caplog.set_level(logging.WARNING, logger="runctl.retry")
    assert RetryPolicy(max_attempts=5, **FAST).call(fn, operation=op) == "ok"
    records = [r for r in caplog.records if r.name == "runctl.retry"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING for r in records)
    assert "attempt 1/5" in records[0].getMessage() and "slow down 1" in records[0].getMessage()
    assert "attempt 2/5" in records[1].getMessage() and op in records[1].getMessage()
    assert records[0].operation == op  # structured field for JSON logs
    assert retries_metric(op) - before == 2


def test_a_non_retryable_failure_is_not_logged_or_counted(caplog: pytest.LogCaptureFixture) -> None:
    op = unique_op("notcounted")
    caplog.set_level(logging.WARNING, logger="runctl.retry")
    with pytest.raises(ValidationError):
        RetryPolicy(**FAST).call(Flaky(ValidationError("no")), operation=op)
    assert not [r for r in caplog.records if r.name == "runctl.retry"]
    assert retries_metric(op) == 0


def test_call_passes_arguments_through() -> None:
    def add(a: int, b: int, *, scale: int) -> int:
        return (a + b) * scale

    assert RetryPolicy(**FAST).call(add, 2, 3, scale=10, operation=unique_op("args")) == 50


def test_async_call_retries_and_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    op = unique_op("async")
    calls = []

    async def flaky(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise ThrottledError("busy")
        return x * 2

    caplog.set_level(logging.WARNING, logger="runctl.retry")
    assert asyncio.run(RetryPolicy(**FAST).acall(flaky, 21, operation=op)) == 42
    assert len(calls) == 3
    assert retries_metric(op) == 2
    assert len([r for r in caplog.records if r.name == "runctl.retry"]) == 2


def test_async_call_exhausts_and_propagates_non_retryable() -> None:
    async def always_busy() -> None:
        raise ThrottledError("busy", hint="later")

    with pytest.raises(RetryExhaustedError) as info:
        asyncio.run(RetryPolicy(max_attempts=2, **FAST).acall(always_busy))
    assert info.value.attempts == 2 and info.value.hint == "later"

    async def invalid() -> None:
        raise ValidationError("nope")

    with pytest.raises(ValidationError):
        asyncio.run(RetryPolicy(**FAST).acall(invalid))


def test_presets_are_bounded() -> None:
    cloud = RetryPolicy.for_cloud_api()
    assert 1 < cloud.max_attempts <= 10
    assert cloud.deadline is not None and cloud.deadline <= 300
    polling = RetryPolicy.for_polling(deadline=42.0)
    assert polling.deadline == 42.0
    assert polling.max_attempts > cloud.max_attempts


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_delay": -1.0},
        {"initial_delay": 5.0, "max_delay": 1.0},
        {"deadline": 0.0},
        {"deadline": -3.0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
