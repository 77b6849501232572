"""Cost truth on synthetic ledgers: known intervals and rates in, the report's figures out.

The expected figures are computed here, independently of :mod:`runctl.core.cost`: every
billable period is generated whole (its rate pieces, its gaps), so the test knows which
intervals belong together, where each piece starts and ends, and what the 60 s minimum adds.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runctl.core import cost
from runctl.core.config import Config
from runctl.core.ledger import Ledger
from runctl.providers import registry

BASE = datetime(2026, 9, 14, 20, 0, tzinfo=UTC).timestamp()  # evenings: periods cross midnight
KINDS = [("aws", "instance"), ("aws", "volume"), ("aws", "snapshot"), ("runpod", "pod"), ("local", "process")]
MINIMUM_S = {("aws", "instance"): 60.0, ("aws", "volume"): 60.0}

piece = st.tuples(st.floats(0.5, 30_000), st.floats(5.0, 200.0))  # (seconds, $/h)
period = st.tuples(st.floats(1.0, 40_000), st.lists(piece, min_size=1, max_size=3))  # (gap before, pieces)
resource = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        "job": st.sampled_from([0, 1, 2, None]),
        "offset": st.floats(0, 50_000),
        "periods": st.lists(period, min_size=1, max_size=4),
        "open": st.booleans(),
    }
)


def billing(ledger: Ledger, provider: str, kind: str) -> dict[str, float]:
    """The billing minimum the provider itself states for ``kind`` (the lifecycle records it with
    every resource it writes; these tests write their rows directly, so they record it too)."""
    minimum = (
        0.0 if provider == "local" else registry.compute(provider, ledger, Config()).billing_minimum_s(kind)
    )
    return {"billing_minimum_s": minimum}


def build(ledger: Ledger, resources: list[dict]) -> tuple[list[dict], float, dict[int, str]]:
    """Write the synthetic ledger; return the pieces (with their period) and ``now``."""
    jobs = {n: ledger.create_job(name=f"job{n}", provider="aws", script="t.py").id for n in range(3)}
    pieces: list[dict] = []
    rows: list[tuple] = []
    for n, spec in enumerate(resources):
        provider, kind = spec["kind"]
        job_id = None if spec["job"] is None else jobs[spec["job"]]
        row = ledger.record_intent(
            provider=provider,
            kind=kind,
            job_id=job_id,
            spec={"instance_type": f"t{n}", **billing(ledger, provider, kind)},
        )
        ledger.mark_created(row.id, cloud_id=f"c-{n}", state="x", billable=False, rate_usd_per_hour=1.0)
        t = BASE + spec["offset"]
        for p, (gap, parts) in enumerate(spec["periods"]):
            t += gap
            for seconds, rate in parts:
                pieces.append(
                    {
                        "resource": row.id, "provider": provider, "kind": kind, "job": job_id,
                        "period": (row.id, p), "start": t, "end": t + seconds, "rate": rate,
                    }
                )  # fmt: skip
                rows.append((row.id, job_id, t, t + seconds, rate))
                t += seconds
    now = max(p["end"] for p in pieces) + 1000.0
    opened = set()  # the last piece of some resources stays open: billed up to now
    resource_ids = list(dict.fromkeys(p["resource"] for p in pieces))
    for spec, rid in zip(resources, resource_ids, strict=True):
        if spec["open"]:
            last = max((p for p in pieces if p["resource"] == rid), key=lambda p: p["start"])
            last["end"] = now
            opened.add((rid, last["start"]))
    conn = sqlite3.connect(ledger.path)
    conn.executemany(
        "INSERT INTO usage (resource_id, job_id, started_at, ended_at, rate_usd_per_hour) VALUES (?,?,?,?,?)",
        [(r, j, s, None if (r, s) in opened else e, rate) for r, j, s, e, rate in rows],
    )
    conn.commit()
    conn.close()
    return pieces, now, jobs


def expected_usd(pieces: list[dict], since: float | None = None, until: float | None = None) -> dict:
    """Ground truth: {(period key): dollars in the window} with each period's minimum top-up."""
    lo = -1e18 if since is None else since
    hi = 1e18 if until is None else until
    by_period: dict[tuple, list[dict]] = defaultdict(list)
    for p in pieces:
        by_period[p["period"]].append(p)
    result: dict[tuple, float] = {}
    for key, parts in by_period.items():
        parts.sort(key=lambda p: p["start"])
        total = sum(max(0.0, min(p["end"], hi) - max(p["start"], lo)) * p["rate"] / 3600 for p in parts)
        minimum = MINIMUM_S.get((parts[0]["provider"], parts[0]["kind"]), 0.0)
        billed = sum(p["end"] - p["start"] for p in parts)
        if billed < minimum and lo <= parts[0]["start"] < hi:
            total += (minimum - billed) * parts[-1]["rate"] / 3600
        result[key] = total
    return result


def expected_by_day(pieces: list[dict], until: float) -> dict[str, float]:
    """Ground truth per UTC date, walking calendar days with datetime (not seconds arithmetic)."""
    days: dict[str, float] = defaultdict(float)
    by_period: dict[tuple, list[dict]] = defaultdict(list)
    for p in pieces:
        by_period[p["period"]].append(p)
        start = datetime.fromtimestamp(p["start"], UTC)
        end = datetime.fromtimestamp(min(p["end"], until), UTC)
        day = start.date()
        while datetime.combine(day, datetime.min.time(), UTC) < end:
            lo = max(start, datetime.combine(day, datetime.min.time(), UTC))
            hi = min(end, datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC))
            days[day.isoformat()] += max(0.0, (hi - lo).total_seconds()) * p["rate"] / 3600
            day += timedelta(days=1)
    for parts in by_period.values():
        parts.sort(key=lambda p: p["start"])
        minimum = MINIMUM_S.get((parts[0]["provider"], parts[0]["kind"]), 0.0)
        billed = sum(p["end"] - p["start"] for p in parts)
        if billed < minimum:
            day = datetime.fromtimestamp(parts[0]["start"], UTC).date().isoformat()
            days[day] += (minimum - billed) * parts[-1]["rate"] / 3600
    return dict(days)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    resources=st.lists(resource, min_size=1, max_size=6),
    window=st.tuples(st.floats(-10_000, 200_000), st.floats(1_000, 300_000)),
)
def test_report_matches_ground_truth_within_a_cent(resources: list[dict], window: tuple) -> None:
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "ledger.db") as ledger:
        pieces, now, jobs = build(ledger, resources)
        truth = expected_usd(pieces)

        # every job: all attempts, all resources; the whole ledger by provider
        for job_id in jobs.values():
            mine = {p["resource"] for p in pieces if p["job"] == job_id}
            want = sum(v for (rid, _), v in truth.items() if rid in mine)
            assert cost.job_cost(ledger, job_id, now=now) == pytest.approx(want, abs=0.01)
        by_provider = {r.key: r.cost_usd for r in cost.report(ledger, by="provider", now=now).rows}
        for provider in {p["provider"] for p in pieces}:
            theirs = {p["resource"] for p in pieces if p["provider"] == provider}
            want = sum(v for (rid, _), v in truth.items() if rid in theirs)
            assert by_provider[provider] == pytest.approx(want, abs=0.01)

        # a window: intervals clipped, top-ups counted where their period starts
        since = BASE + window[0]
        until = since + window[1]
        clipped = cost.report(ledger, by="resource", since=since, until=until, now=now)
        assert clipped.total_usd == pytest.approx(sum(expected_usd(pieces, since, until).values()), abs=0.01)

        # by day: split at midnight UTC, same total
        days = {r.key: r.cost_usd for r in cost.report(ledger, by="day", now=now).rows}
        want_days = expected_by_day(pieces, now)
        assert set(days) == {d for d, v in want_days.items() if v > 0}
        for day, value in want_days.items():
            assert days.get(day, 0.0) == pytest.approx(value, abs=0.01)
        assert sum(days.values()) == pytest.approx(sum(truth.values()), abs=0.01)


# -- the billing rules, one at a time ----------------------------------------------------------


def _ledger_with(tmp_path: Path, provider: str, kind: str, intervals: list[tuple]) -> tuple[Ledger, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(tmp_path / "ledger.db")
    job = ledger.create_job(name="j", provider=provider, script="t.py")
    row = ledger.record_intent(
        provider=provider, kind=kind, job_id=job.id, spec=billing(ledger, provider, kind)
    )
    ledger.mark_created(row.id, cloud_id="c-1", state="x", billable=False, rate_usd_per_hour=36.0)
    conn = sqlite3.connect(ledger.path)
    conn.executemany(
        "INSERT INTO usage (resource_id, job_id, started_at, ended_at, rate_usd_per_hour) VALUES (?,?,?,?,?)",
        [(row.id, job.id, *i) for i in intervals],
    )
    conn.commit()
    conn.close()
    return ledger, job.id


def test_per_second_billing_is_exact(tmp_path: Path) -> None:
    ledger, job = _ledger_with(tmp_path, "aws", "instance", [(1000.0, 1090.5, 36.0)])
    assert cost.job_cost(ledger, job) == pytest.approx(90.5 * 36 / 3600)  # $0.905, no rounding up


@pytest.mark.parametrize(
    ("provider", "kind", "expected"),
    [("aws", "instance", 0.6), ("aws", "volume", 0.6), ("aws", "snapshot", 0.1), ("runpod", "pod", 0.1),
     ("local", "process", 0.1)],
)  # fmt: skip
def test_sixty_second_minimum_applies_to_ec2_and_ebs_only(tmp_path, provider, kind, expected) -> None:
    ledger, job = _ledger_with(tmp_path, provider, kind, [(1000.0, 1010.0, 36.0)])  # 10 s at $36/h
    assert cost.job_cost(ledger, job) == pytest.approx(expected)


def test_a_rate_change_does_not_restart_the_minimum_but_a_stop_does(tmp_path: Path) -> None:
    # 30 s at $36/h then, contiguous, 40 s at $72/h: one 70 s period, no top-up
    ledger, job = _ledger_with(tmp_path, "aws", "instance", [(0.0, 30.0, 36.0), (30.0, 70.0, 72.0)])
    assert cost.job_cost(ledger, job) == pytest.approx(0.3 + 0.8)
    # the same pieces with a 100 s stop between: two periods, each billed at least 60 s
    ledger, job = _ledger_with(tmp_path / "b", "aws", "instance", [(0.0, 30.0, 36.0), (130.0, 170.0, 72.0)])
    assert cost.job_cost(ledger, job) == pytest.approx(60 * 36 / 3600 + 60 * 72 / 3600)


def test_stop_start_gaps_are_not_billed(tmp_path: Path) -> None:
    # running 100 s, stopped an hour, running 200 s: 300 s billed, not 3900 s
    ledger, job = _ledger_with(tmp_path, "aws", "instance", [(0.0, 100.0, 36.0), (3700.0, 3900.0, 36.0)])
    assert cost.job_cost(ledger, job) == pytest.approx(300 * 36 / 3600)


def test_an_open_period_owes_its_minimum_at_once(tmp_path: Path) -> None:
    ledger, job = _ledger_with(tmp_path, "aws", "instance", [(1000.0, None, 36.0)])
    assert cost.job_cost(ledger, job, now=1005.0) == pytest.approx(0.6)  # 5 s running, 60 s owed
    assert cost.job_cost(ledger, job, now=1090.0) == pytest.approx(0.9)


def test_transitions_through_the_ledger_api_are_billed_by_the_rules(tmp_path: Path) -> None:
    """Real transitions (running, stopped, running, new rate, terminated): one period per run."""
    ledger = Ledger(tmp_path / "ledger.db")
    job = ledger.create_job(name="j", provider="aws", script="t.py")
    row = ledger.record_intent(
        provider="aws", kind="instance", job_id=job.id, spec=billing(ledger, "aws", "instance")
    )
    ledger.mark_created(row.id, cloud_id="i-1", state="running", billable=True, rate_usd_per_hour=36.0)
    ledger.transition(row.id, "stopped", billable=False)
    ledger.transition(row.id, "running", billable=True)
    ledger.set_rate(row.id, 72.0)
    ledger.transition(row.id, "terminated", billable=False)
    intervals = ledger.usage(resource_id=row.id)
    assert len(intervals) == 3
    # all three were seconds-short: the first run alone, the second split by the new rate
    first, second, third = ((i.ended_at or 0) - i.started_at for i in intervals)
    want = max(60, first) * 36 + second * 36 + third * 72 + max(0, 60 - second - third) * 72
    assert cost.job_cost(ledger, job.id) == pytest.approx(want / 3600, rel=1e-6)
    assert [i.rate_usd_per_hour for i in intervals] == [36.0, 36.0, 72.0]
