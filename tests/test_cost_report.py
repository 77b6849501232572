"""``runctl cost report`` (table, json, csv; by job, resource, provider, type, day; windows) and the
cost columns of ``jobs list``, ``resources list`` and the Prometheus gauges, on one known ledger."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runctl.core.ledger import Ledger
from tests.conftest import run_cli

MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
T0 = MIDNIGHT - 3 * 86400 + 3600  # 2026-11-17 01:00


@pytest.fixture
def known(isolated_env: Path) -> dict[str, str]:
    """alpha (aws): g5.xlarge 1 h at $36/h + a gp3 volume 30 s at $7.2/h (billed 60 s);
    beta (runpod): a pod 1 h across midnight at $3.6/h; no job: a local process open for 6 min."""
    isolated_env.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(isolated_env / "ledger.db")
    alpha = ledger.create_job(name="alpha", provider="aws", script="t.py")
    beta = ledger.create_job(name="beta", provider="runpod", script="t.py")
    ids: dict[str, str] = {"alpha": alpha.id, "beta": beta.id}
    rows = [
        ("instance", "aws", "instance", alpha.id, {"instance_type": "g5.xlarge"}, 36.0, T0, T0 + 3600),
        ("volume", "aws", "volume", alpha.id, {"volume_type": "gp3", "size_gb": 100}, 7.2, T0, T0 + 30),
        (
            "pod",
            "runpod",
            "pod",
            beta.id,
            {"gpu_types": ["NVIDIA RTX A5000"]},
            3.6,
            MIDNIGHT - 1800,
            MIDNIGHT + 1800,
        ),
        ("process", "local", "process", None, {}, 36.0, time.time() - 360, None),
    ]
    intervals = []
    for name, provider, kind, job_id, spec, rate, start, end in rows:
        minimum = 60.0 if provider == "aws" else 0.0  # what the AWS provider records (EC2/EBS)
        row = ledger.record_intent(
            provider=provider, kind=kind, job_id=job_id, spec={**spec, "billing_minimum_s": minimum}
        )
        ledger.mark_created(row.id, cloud_id=f"{name}-1", state="x", billable=False, rate_usd_per_hour=rate)
        ids[name] = row.id
        intervals.append((row.id, job_id, start, end, rate))
    ledger.close()
    conn = sqlite3.connect(isolated_env / "ledger.db")
    conn.executemany(
        "INSERT INTO usage (resource_id, job_id, started_at, ended_at, rate_usd_per_hour) VALUES (?,?,?,?,?)",
        intervals,
    )
    conn.commit()
    conn.close()
    return ids


def report(*args: str) -> dict:
    result = run_cli("cost", "report", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_report_by_job_json_shape_and_figures(known: dict[str, str]) -> None:
    data = report("--by", "job")
    assert set(data) == {"by", "since", "until", "currency", "total_usd", "rows", "notes"}
    assert data["by"] == "job" and data["currency"] == "USD" and data["since"] is None
    rows = {r["key"]: r for r in data["rows"]}
    assert set(rows[known["alpha"]]) == {"key", "label", "cost_usd", "hours", "usd_per_hour_now", "resources"}
    assert rows[known["alpha"]]["cost_usd"] == pytest.approx(36.0 + 0.12)  # the volume's 60 s minimum
    assert rows[known["alpha"]]["label"] == "alpha" and rows[known["alpha"]]["resources"] == 2
    assert rows[known["beta"]]["cost_usd"] == pytest.approx(3.6)
    assert rows["-"]["label"] == "(no job)" and rows["-"]["cost_usd"] == pytest.approx(3.6, abs=0.05)
    assert rows["-"]["usd_per_hour_now"] == 36.0 and rows[known["alpha"]]["usd_per_hour_now"] == 0
    assert data["total_usd"] == pytest.approx(36.12 + 3.6 + 3.6, abs=0.05)
    assert data["rows"][0]["key"] == known["alpha"]  # most expensive first


def test_report_by_provider_type_and_resource(known: dict[str, str]) -> None:
    providers = {r["key"]: r["cost_usd"] for r in report("--by", "provider")["rows"]}
    assert providers == pytest.approx({"aws": 36.12, "runpod": 3.6, "local": 3.6}, abs=0.05)
    types = {r["key"]: r["cost_usd"] for r in report("--by", "type")["rows"]}
    assert types["g5.xlarge"] == pytest.approx(36.0) and types["volume gp3"] == pytest.approx(0.12)
    assert types["NVIDIA RTX A5000"] == pytest.approx(3.6)
    resources = {r["key"]: r for r in report("--by", "resource")["rows"]}
    assert resources[known["volume"]]["label"] == "aws volume volume-1"
    assert resources[known["volume"]]["hours"] == pytest.approx(30 / 3600, abs=1e-6)  # time, not the minimum


def test_report_by_day_splits_at_midnight_utc(known: dict[str, str]) -> None:
    days = {r["key"]: r["cost_usd"] for r in report("--by", "day", "--until", "2026-11-21")["rows"]}
    assert days == pytest.approx({"2026-11-17": 36.12, "2026-11-19": 1.8, "2026-11-20": 1.8})


def test_report_window_clips_intervals(known: dict[str, str]) -> None:
    data = report("--since", "2026-11-20", "--until", "2026-11-20T00:15:00")
    assert data["since"] == "2026-11-20T00:00:00+00:00" and data["until"] == "2026-11-20T00:15:00+00:00"
    assert [(r["key"], r["cost_usd"]) for r in data["rows"]] == [(known["beta"], pytest.approx(0.9))]
    # a window that holds the volume's start carries its minimum; one after it does not
    assert report("--since", "2026-11-17T01:00:00", "--until", "2026-11-17T01:00:10", "--by", "resource")[
        "total_usd"
    ] == pytest.approx((36 + 7.2) * 10 / 3600 + 30 * 7.2 / 3600)  # + the volume's 30 s top-up
    assert report("--since", "2026-11-17T01:00:10", "--until", "2026-11-17T01:00:20")[
        "total_usd"
    ] == pytest.approx((36 + 7.2) * 10 / 3600)
    assert report("--provider", "runpod")["total_usd"] == pytest.approx(3.6)


def test_report_csv_has_the_json_rows(known: dict[str, str]) -> None:
    result = run_cli("cost", "report", "--by", "provider", "-o", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "key,label,cost_usd,hours,usd_per_hour_now,resources"
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    as_json = report("--by", "provider")["rows"]
    assert [r["key"] for r in rows] == [r["key"] for r in as_json]
    for got, want in zip(rows, as_json, strict=True):
        assert float(got["cost_usd"]) == pytest.approx(want["cost_usd"], abs=0.01)
        assert int(got["resources"]) == want["resources"]


def test_report_table_and_bad_dates(known: dict[str, str]) -> None:
    table = run_cli("cost", "report", "--by", "provider")
    assert table.returncode == 0 and "aws" in table.stdout and "total $43" in table.stdout
    bad = run_cli("cost", "report", "--since", "last tuesday")
    assert bad.returncode == 64 and "--since 'last tuesday' is not a date" in bad.stderr
    backwards = run_cli("cost", "report", "--since", "2026-11-20", "--until", "2026-11-19")
    assert backwards.returncode == 64 and "after --since" in backwards.stderr


def test_cost_columns_follow_the_billing_rules(known: dict[str, str]) -> None:
    jobs = {j["id"]: j for j in json.loads(run_cli("jobs", "list", "-o", "json").stdout)}
    assert jobs[known["alpha"]]["cost_usd"] == pytest.approx(36.12)
    resources = {r["id"]: r for r in json.loads(run_cli("resources", "list", "--all", "-o", "json").stdout)}
    assert resources[known["volume"]]["cost_usd"] == pytest.approx(0.12)
    shown = run_cli("jobs", "show", known["alpha"], "-o", "json")
    assert json.loads(shown.stdout)["cost_usd"] == pytest.approx(36.12)


def test_prometheus_cost_gauges_use_the_same_rules(known: dict[str, str], isolated_env: Path) -> None:
    from runctl.core.metrics import ledger_metrics

    families = {f.name: f for f in ledger_metrics(Ledger(isolated_env / "ledger.db"), now=time.time())}
    totals = {s.labels["provider"]: s.value for s in families["runctl_cost_total_usd"].samples}
    assert totals["aws"] == pytest.approx(36.12)
    rates = {s.labels["provider"]: s.value for s in families["runctl_cost_rate_usd_per_hour"].samples}
    assert rates == {"aws": 0.0, "local": 36.0, "runpod": 0.0}


def test_budget_status_shows_the_figures(known: dict[str, str], isolated_env: Path) -> None:
    """The figures come from an injected clock (the fixture's November, not today's month); the
    CLI's own clock only decides which rows fall in the period, so its table is checked apart."""
    from runctl.core import budget
    from runctl.core.config import CostConfig

    ledger = Ledger(isolated_env / "ledger.db")
    try:
        november = budget.status(ledger, CostConfig(budget_usd=100), now=MIDNIGHT + 86400)
    finally:
        ledger.close()
    assert november["budget_usd"] == 100 and november["running_usd_per_hour"] == 36.0
    assert november["period_start"] == "2026-11-01T00:00:00+00:00"
    # alpha and beta fall in November; the local process opened "now" is after the clock
    assert november["spent_usd"] == pytest.approx(36.12 + 3.6, abs=0.05)
    result = run_cli("cost", "budget", "-o", "json", env={"RUNCTL_COST__BUDGET_USD": "100"})
    data = json.loads(result.stdout)
    assert data["budget_usd"] == 100 and data["running_usd_per_hour"] == 36.0
    table = run_cli("cost", "budget", env={"RUNCTL_COST__BUDGET_USD": "100"})
    assert "of $100.00" in table.stdout
