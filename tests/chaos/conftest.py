"""Fixtures of the chaos suite: every test here is marked ``chaos``, runs its CLI commands with a
small ``[retry]`` policy (set through the environment, as a user would), and may record figures
that ``CHAOS_FIGURES=path.json`` writes out at the end of the session (docs/reliability.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent

#: The retry policy of every CLI process in the suite: fail fast, keep every test short.
FAST_RETRY_ENV = {
    "RUNCTL_RETRY__MAX_ATTEMPTS": "6",
    "RUNCTL_RETRY__INITIAL_DELAY": "10ms",
    "RUNCTL_RETRY__MAX_DELAY": "200ms",
    "RUNCTL_RETRY__DEADLINE": "20s",
    "RUNCTL_RETRY__POLL_INTERVAL": "50ms",
    "RUNCTL_RETRY__POLL_MAX_INTERVAL": "200ms",
}

_FIGURES: dict[str, Any] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("CHAOS_FIGURES")
    if target and _FIGURES:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True) + "\n")


@pytest.fixture(autouse=True)
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAST_RETRY_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict this test fills with what it measured; kept under the test's id."""
    measured: dict[str, Any] = {}
    yield measured
    if measured:
        _FIGURES[request.node.nodeid.split("::", 1)[-1]] = measured
