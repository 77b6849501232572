"""Concurrency: eight runctl processes at once create, list and terminate instances on moto,
sharing one ledger, while four ``resources reconcile --apply`` run among them. The ledger must
stay intact (``PRAGMA integrity_check``) and exact: every instance created is in it exactly once,
every one terminated is recorded terminated, no in-flight create is written off, and the
ledger's live rows are exactly what moto has alive."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runctl.core.ledger import LEDGER_FILE
from tests.chaos.checks import aws_alive, integrity, no_traceback
from tests.conftest import run_cli

WORKERS = 8


def worker(n: int) -> dict[str, Any]:
    """Create two instances, list, terminate the first; every other worker also reconciles."""
    created = []
    for _ in range(2):
        result = no_traceback(run_cli("aws", "create", "t3.micro", "-o", "id", "--yes", timeout=180))
        assert result.returncode == 0, result.stderr
        created.append(result.stdout.strip())
    listed = no_traceback(run_cli("aws", "list", "-o", "json", timeout=180))
    assert listed.returncode == 0, listed.stderr
    seen = {i["id"] for i in json.loads(listed.stdout)}
    assert set(created) <= seen  # a process sees its own writes
    if n % 2:  # while the others are still creating: their intents must be left alone
        reconciled = no_traceback(run_cli("resources", "reconcile", "--apply", "-o", "json", timeout=180))
        assert reconciled.returncode == 0, reconciled.stderr
    done = no_traceback(run_cli("aws", "terminate", created[0], timeout=180))
    assert done.returncode == 0, done.stderr
    return {"created": created, "terminated": [created[0]]}


def test_eight_processes_share_the_ledger(aws: str, isolated_env: Path, figures: dict[str, Any]) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(worker, range(WORKERS)))
    wall = time.monotonic() - started
    created = [i for r in results for i in r["created"]]
    terminated = {i for r in results for i in r["terminated"]}
    assert len(created) == len(set(created)) == 2 * WORKERS

    db = isolated_env / LEDGER_FILE
    assert integrity(db) == "ok"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT cloud_id, state FROM resources WHERE kind = 'instance'").fetchall()
        table = conn.execute("SELECT id, cloud_id, state, spec FROM resources").fetchall()
        intents = conn.execute("SELECT count(*) FROM events WHERE kind = 'resource.intent'").fetchone()[0]
        open_usage = conn.execute(
            "SELECT count(*) FROM usage u JOIN resources r ON r.id = u.resource_id"
            " WHERE u.ended_at IS NULL AND r.state = 'terminated'"
        ).fetchone()[0]
    finally:
        conn.close()
    by_cloud = dict(rows)
    report = f"created={created} terminated={terminated} ledger={table}"
    assert len(rows) == len(by_cloud) == 2 * WORKERS, report  # each instance exactly once
    assert set(by_cloud) == set(created), report
    assert intents == 2 * WORKERS  # one intent per create, none lost or doubled
    assert {i for i, s in by_cloud.items() if s == "terminated"} == terminated
    assert all(s in ("pending", "running") for i, s in by_cloud.items() if i not in terminated)
    assert "create_failed" not in by_cloud.values()  # no in-flight create was written off
    assert open_usage == 0  # nothing terminated still accrues cost
    alive = {k for k, owner in aws_alive(aws).items() if k == owner and k.startswith("i-")}
    assert alive == set(created) - terminated, f"alive={alive} {report}"

    figures.update(
        processes=WORKERS,
        cli_commands=WORKERS * 4 + WORKERS // 2,
        instances_created=len(created),
        instances_terminated=len(terminated),
        ledger_rows=len(rows),
        integrity="ok",
        wall_s=round(wall, 1),
    )
