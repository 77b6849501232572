"""`runctl dashboard`: server time per request of the Now and Money pages (HTML and JSON) with
10 000 jobs in the ledger, their payload sizes, and the process's memory over an hour of live
updates. Goal: ≤ 100 ms median per page on SQLite; no memory growth.

Requests go through the real ASGI app in-process (Starlette's test client: routing, the token
gate, rendering; no socket), so the time is the server's. Money and Reliability are cached
while the ledger is unchanged (``runctl.web.app.ViewCache``), so they are measured both ways:
ledger unchanged (a reload), and ledger changed before every request (another process wrote an
event: the whole view is recomputed). The ledger holds 10 000 finished jobs
over the last 30 days (an EC2 instance each, one closed usage interval, five events) and 20
running ones (open intervals). Peers: the goal itself, and for Money, ``cost report --by day``
over the same window computed in the same process (the figures the page must equal). An hour of
live updates is 1 800 renders of the Now fragment (one every 2 s); the RSS after it is compared
with the RSS after the first 100.

    ./dev bench dashboard            # or: python benchmarks/run.py [--quick] dashboard
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, print_table, write_results

GOAL_S = 0.100


def seed_ledger(path: Path, jobs: int, running: int, now: float) -> None:
    """``jobs`` finished jobs spread over 30 days and ``running`` live ones, in one transaction."""
    from runctl.core.ledger import Ledger

    ledger = Ledger(path)
    with ledger._tx() as conn:  # one transaction: seeding speed is not what is measured
        for i in range(jobs + running):
            live = i >= jobs
            start = now - 3600 * 2 if live else now - 30 * 86400 + i * (29 * 86400 / jobs)
            end = None if live else start + 1800 + (i % 7) * 600
            job_id, resource_id = f"j-{i:08x}", f"r-{i:08x}"
            conn.execute(
                "INSERT INTO jobs (id, name, provider, state, script, created_at, started_at, ended_at,"
                " exit_code, host) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job_id, f"proj{i % 5}.job{i % 50}", "aws", "running" if live else "succeeded", "train.py",
                 start, start, end, None if live else 0, f"host{i % 3}"),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO resources (id, job_id, provider, kind, cloud_id, client_token, state,"
                " rate_usd_per_hour, region, zone, spec, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (resource_id, job_id, "aws", "instance", f"i-{i:017x}", f"tok-{i}",
                 "running" if live else "terminated", 1.0 + i % 4, "us-east-1", f"us-east-1{'abc'[i % 3]}",
                 json.dumps({"instance_type": "g5.xlarge", "market": "spot" if i % 2 else "on-demand",
                             "billing_minimum_s": 60.0}), start, end or start),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO usage (resource_id, job_id, started_at, ended_at, rate_usd_per_hour)"
                " VALUES (?,?,?,?,?)",
                (resource_id, job_id, start, end, 1.0 + i % 4),
            )
            for n, kind in enumerate(("job.created", "resource.intent", "resource.state", "job.attempt")):
                conn.execute(
                    "INSERT INTO events (ts, kind, message, job_id, resource_id) VALUES (?,?,?,?,?)",
                    (start + n, kind, kind, job_id, resource_id),
                )
            if not live:
                kind = "job.preemption" if i % 40 == 0 else "job.finished"
                conn.execute(
                    "INSERT INTO events (ts, kind, message, job_id, data) VALUES (?,?,?,?,?)",
                    (end, kind, kind, job_id, json.dumps({"attempt": 1})),
                )
    ledger.close()


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _time(call: object, runs: int) -> tuple[float, int]:
    """Median seconds of ``call()`` over ``runs`` (after one warm-up) and the last payload's size."""
    size = len(call().content)  # type: ignore[operator]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
        size = len(response.content)
    return statistics.median(times), size


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, a shorter live hour")
    quick = parser.parse_args(argv or []).quick
    runs, updates = (5, 300) if quick else (21, 1800)
    from starlette.testclient import TestClient

    from runctl.core.config import Config
    from runctl.core.cost import report
    from runctl.core.ledger import Ledger
    from runctl.web import pages
    from runctl.web.app import create_app
    from runctl.workflows.dashboard import money_view, now_view

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        now = time.time()
        seed_ledger(path, 10_000, 20, now)
        os.environ["RUNCTL_STATE_DIR"] = tmp
        with Ledger(path) as ledger:
            client = TestClient(create_app(ledger, Config(), token="b" * 32))
            client.headers["authorization"] = "Bearer " + "b" * 32
            other = Ledger(path)  # another process's writes: every request after one is a cache miss

            def changed_then(url: str) -> Any:
                other.add_event("bench.tick", "the ledger changed")
                return client.get(url)

            for name, url, call in (
                ("Now (HTML)", "/now", client.get), ("Now (JSON)", "/api/now", client.get),
                ("Money (HTML), ledger unchanged", "/money", client.get),
                ("Money (JSON), ledger unchanged", "/api/money", client.get),
                ("Money (HTML), ledger changed", "/money", changed_then),
                ("Money (JSON), ledger changed", "/api/money", changed_then),
                ("Reliability (HTML), ledger changed", "/reliability", changed_then),
            ):  # fmt: skip
                median, size = _time(lambda url=url, call=call: call(url), runs)
                rows.append({"name": name, "median_ms": round(median * 1000, 1),
                             "payload_kib": round(size / 1024, 1)})  # fmt: skip
            other.close()
            since = money_view(ledger).since
            peer = []
            for _ in range(runs):
                start = time.perf_counter()
                report(ledger, by="day", since=since)
                peer.append(time.perf_counter() - start)
            rows.append({"name": "cost report --by day (same window)", "median_ms":
                         round(statistics.median(peer) * 1000, 1), "payload_kib": None})  # fmt: skip
            for _ in range(100):
                pages.now_fragment(now_view(ledger), "x")
            before = _rss_mib()
            for _ in range(updates - 100):
                pages.now_fragment(now_view(ledger), "x")
            after = _rss_mib()
            rows.append({"name": f"live updates: RSS after {updates} vs after 100 (MiB)",
                         "median_ms": None, "payload_kib": None,
                         "rss_mib_before": round(before, 1), "rss_mib_after": round(after, 1)})  # fmt: skip
    table = [
        [r["name"], r["median_ms"], r["payload_kib"], f"{r.get('rss_mib_before')} → {r.get('rss_mib_after')}"]
        for r in rows
    ]
    print_table(
        "Dashboard with 10 000 jobs: server time per request (median) and payload",
        ["what", "median ms", "payload KiB", "RSS MiB"],
        table,
    )
    write_results("dashboard", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Each page against the 100 ms goal; Money also against cost report; memory after vs before."""
    lines = []
    by_name = {str(r["name"]): r for r in rows}
    for row in rows:
        name, ms = str(row["name"]), row["median_ms"]
        if not isinstance(ms, float) or name.startswith("cost report"):
            continue
        goal = f"{GOAL_S * 1000:.0f} ms"
        lines.append(Ratio("dashboard", name, f"{ms} ms", "goal", goal, ms / (GOAL_S * 1000)))
    peer = by_name["cost report --by day (same window)"]["median_ms"]
    money = by_name["Money (JSON), ledger changed"]["median_ms"]
    if isinstance(peer, float) and isinstance(money, float):
        lines.append(Ratio("dashboard", "Money (JSON), ledger changed", f"{money} ms", "cost report --by day",
                           f"{peer} ms", money / peer))  # fmt: skip
    memory = next(r for r in rows if "rss_mib_after" in r)
    before, after = float(memory["rss_mib_before"]), float(memory["rss_mib_after"])  # type: ignore[arg-type]
    lines.append(Ratio("dashboard", "RSS after an hour of live updates", f"{after} MiB", "after 100 updates",
                       f"{before} MiB", after / before))  # fmt: skip
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
