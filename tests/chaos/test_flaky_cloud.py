"""A flaky cloud: the fault proxy between runctl and moto answers 10 %, 30 % or 50 % of requests
(seeded) with throttling, a 5xx, a reset connection, a slow answer, or a lost answer (the request
reached AWS, the response never came back). Every command must then either succeed or fail with
a clear error and a documented exit code, quickly; its attempts stay bounded; and once the cloud
is healthy again, one ``resources reconcile --apply`` leaves nothing unaccounted for."""

from __future__ import annotations

import http.client
import json
import random
import time
from collections import Counter
from typing import Any

import pytest

from runctl.core.ledger import Ledger
from tests.chaos.checks import CLOUD_FAILURE_CODES, assert_clean_failure, aws_alive, aws_leaks, live_cloud_ids
from tests.chaos.conftest import FAST_RETRY_ENV
from tests.conftest import CliResult, run_cli
from tests.support.fault_proxy import Fault, FaultProxy, Request, ec2_error

MAX_ATTEMPTS = int(FAST_RETRY_ENV["RUNCTL_RETRY__MAX_ATTEMPTS"])
COMMAND_DEADLINE_S = 60.0  # a command that takes longer than this has hung on the faults
MUTATIONS = ("RunInstances", "TerminateInstances", "CreateVolume", "DeleteVolume")
FAULTS = ("throttle", "5xx", "reset", "slow", "lost")

#: Requests per action of each command against a healthy cloud (measured once, lazily).
_BASELINE: dict[str, Counter[str]] = {}


def flaky(proxy: FaultProxy, fraction: float, seed: int) -> Counter[str]:
    """Inject a random fault on about ``fraction`` of requests; returns the tally of faults."""
    rng = random.Random(seed)
    tally: Counter[str] = Counter()

    def rule(request: Request) -> Fault | None:
        if rng.random() >= fraction:
            return None
        kind = rng.choice(FAULTS)
        tally[kind] += 1
        if kind == "throttle":
            return ec2_error("RequestLimitExceeded", 503, "Request limit exceeded.")
        if kind == "5xx":
            return ec2_error("InternalError", 500, "An internal error has occurred")
        if kind == "reset":
            return Fault(reset=True)
        if kind == "slow":
            return Fault(delay=0.3, forward=True)
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
        conn.request(request.method, request.path, body=request.body, headers=headers)
        conn.getresponse().read()  # AWS acted; its answer is lost on the way back
        conn.close()
        return ec2_error("InternalError", 503, "the answer was lost")

    proxy.rule = rule
    return tally


class Session:
    """Runs CLI commands through the proxy, timing them and counting their requests."""

    def __init__(self, proxy: FaultProxy, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.proxy = proxy
        self.max_attempts = max_attempts
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0

    def run(self, name: str, *args: str) -> tuple[CliResult, Counter[str]]:
        first = len(self.proxy.requests)
        started = time.monotonic()
        result = run_cli(*args, timeout=COMMAND_DEADLINE_S + 30)
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        assert elapsed < COMMAND_DEADLINE_S, f"{name} took {elapsed:.1f}s"
        if result.returncode:
            assert_clean_failure(result, CLOUD_FAILURE_CODES)
        self.outcomes[f"{name}: {result.returncode}"] += 1
        sent = Counter(r.action or r.method for r in self.proxy.requests[first:])
        for action in MUTATIONS:  # one logical call of each per command, retried at most N times
            assert sent[action] <= self.max_attempts, (name, action, sent[action])
        return result, sent


def workload(session: Session) -> dict[str, list[str]]:
    """Create two instances and a volume, list, then terminate and delete them."""
    made: dict[str, list[str]] = {"instances": [], "volumes": [], "terminated": [], "deleted": []}
    for _ in range(2):
        result, _ = session.run("aws create", "aws", "create", "t3.micro", "-o", "id")
        if result.returncode == 0:
            made["instances"].append(result.stdout.strip())
    result, _ = session.run("aws ebs create", "aws", "ebs", "create", "--size", "5", "-o", "id")
    if result.returncode == 0:
        made["volumes"].append(result.stdout.strip())
    session.run("aws list", "aws", "list", "-o", "json")
    for instance in made["instances"]:
        if session.run("aws terminate", "aws", "terminate", instance)[0].returncode == 0:
            made["terminated"].append(instance)
    for volume in made["volumes"]:
        if session.run("aws ebs delete", "aws", "ebs", "delete", volume)[0].returncode == 0:
            made["deleted"].append(volume)
    return made


def baseline(proxy: FaultProxy) -> Counter[str]:
    """Requests per action of the whole workload against a healthy cloud."""
    if "workload" not in _BASELINE:
        proxy.rule = None
        first = len(proxy.requests)
        made = workload(Session(proxy))
        assert len(made["terminated"]) == 2 and len(made["deleted"]) == 1  # healthy: all succeed
        _BASELINE["workload"] = Counter(r.action or r.method for r in proxy.requests[first:])
    return _BASELINE["workload"]


@pytest.mark.parametrize(
    ("fraction", "attempts", "seed"),
    [(0.1, MAX_ATTEMPTS, 10), (0.3, MAX_ATTEMPTS, 30), (0.5, MAX_ATTEMPTS, 50), (0.5, 2, 11)],
    ids=["10%", "30%", "50%", "50%-2-attempts"],  # the last one makes some commands fail, too
)
def test_flaky_cloud(
    fault_proxy: FaultProxy,
    aws: str,
    fraction: float,
    attempts: int,
    seed: int,
    figures: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    healthy = baseline(fault_proxy)
    monkeypatch.setenv("RUNCTL_RETRY__MAX_ATTEMPTS", str(attempts))
    first = len(fault_proxy.requests)
    tally = flaky(fault_proxy, fraction, seed=seed)
    session = Session(fault_proxy, attempts)
    made = workload(session)
    sent = Counter(r.action or r.method for r in fault_proxy.requests[first:])
    # attempts are bounded: no action is sent more than max_attempts times what a healthy run needs
    for action, count in sent.items():
        assert count <= attempts * max(healthy[action], 1), (action, count, healthy[action])

    # what the commands reported is true in the cloud and in the ledger
    ledger = Ledger.open_default()
    alive = aws_alive(aws)
    for instance in made["terminated"]:
        assert instance not in alive
        assert ledger.find_resource("aws", instance).state == "terminated"  # type: ignore[union-attr]
    for instance in set(made["instances"]) - set(made["terminated"]):
        row = ledger.find_resource("aws", instance)  # created and recorded, and a terminate that
        assert row is not None and not row.is_gone  # was not confirmed never says "gone" early
    for volume in made["deleted"]:
        assert volume not in alive

    # the cloud heals; one reconcile accounts for everything, both ways
    fault_proxy.rule = None
    unaccounted_before = len(aws_leaks(aws))
    fixed = run_cli("resources", "reconcile", "--apply", "--intent-grace", "0", "-o", "json")
    assert fixed.returncode == 0, fixed.stderr
    ledger = Ledger.open_default()
    assert aws_leaks(aws, ledger) == set()
    owners = set(aws_alive(aws).values())
    assert live_cloud_ids(ledger, "aws") == owners  # and no live row for something gone
    cleaned = run_cli("resources", "cleanup", "--yes", "--intent-grace", "0")
    assert cleaned.returncode == 0, cleaned.stderr
    assert aws_alive(aws) == {}

    figures.update(
        fraction=fraction,
        max_attempts=attempts,
        seed=seed,
        requests=sum(sent.values()),
        healthy_requests=sum(healthy.values()),
        injected=dict(tally),
        outcomes=dict(session.outcomes),
        slowest_command_s=round(session.slowest, 2),
        unaccounted_before_reconcile=unaccounted_before,
        unaccounted_after_reconcile=0,
        reconcile_actions=sorted(a["action"] for a in json.loads(fixed.stdout)["actions"]),
    )
