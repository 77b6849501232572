"""Ledger throughput: operations per second through :class:`runctl.core.ledger.Ledger` with 1
and 8 processes writing at once, against the floor of the same rows written with raw sqlite3.

One *round* is the life of one cloud job, five ledger operations, each its own transaction:
``create_job``, ``add_event``, ``record_intent``, ``mark_created`` (billable: opens a usage
interval), ``transition`` to terminated (closes it). The floor writes the same rows and updates
with bare ``sqlite3`` on the same schema, WAL and durability (one ``BEGIN IMMEDIATE`` … ``COMMIT``
per operation), without what the Ledger adds: its lock, state checks, JSON, the row read back
into a dataclass. Every configuration runs in fresh worker processes started together; the
aggregate rate is all operations ÷ (last finish − common start); the three configurations
alternate over 3 runs and the median run of each is reported. After every run the ledger must
pass ``integrity_check`` and hold exactly processes × rounds jobs, or the benchmark fails.

    ./dev bench ledger            # or: python benchmarks/run.py [--quick] ledger
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, print_table, write_results
from runctl.core.ledger import Ledger

OPS_PER_ROUND = 5


def ledger_round(ledger: Ledger, i: int) -> None:
    """The five operations of one job's life, through runctl's Ledger."""
    job = ledger.create_job(name="bench", provider="aws", script="train.py")
    ledger.add_event("bench.step", f"step {i}", job_id=job.id)
    resource = ledger.record_intent(provider="aws", kind="instance", job_id=job.id, spec={"type": "g5"})
    ledger.mark_created(
        resource.id, cloud_id=f"i-{i:08x}", state="running", billable=True, rate_usd_per_hour=1.0
    )
    ledger.transition(resource.id, "terminated", billable=False)


def _tx(conn: sqlite3.Connection, statements: list[tuple[str, tuple[object, ...]]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for sql, params in statements:
        conn.execute(sql, params)
    conn.execute("COMMIT")


_EVENT = "INSERT INTO events (ts, kind, message, job_id, resource_id, data) VALUES (?,?,?,?,?,?)"


def raw_round(conn: sqlite3.Connection, i: int) -> None:
    """The same rows and updates as :func:`ledger_round`, with bare sqlite3: the floor."""
    now = time.time()
    job, res = f"j-{secrets.token_hex(4)}", f"r-{secrets.token_hex(4)}"
    _tx(conn, [
        ("INSERT INTO jobs (id, name, provider, state, script, args, created_at, attempt, host)"
         " VALUES (?,?,?,?,?,?,?,?,?)", (job, "bench", "aws", "pending", "train.py", "[]", now, 1, "h")),
        (_EVENT, (now, "job.created", "job bench created", job, None, None)),
    ])  # fmt: skip
    _tx(conn, [(_EVENT, (now, "bench.step", f"step {i}", job, None, None))])
    _tx(conn, [
        ("INSERT INTO resources (id, job_id, provider, kind, client_token, state, spec, persistent,"
         " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
         (res, job, "aws", "instance", f"runctl-{res}-{secrets.token_hex(8)}", "intent", '{"type": "g5"}',
          0, now, now)),
        (_EVENT, (now, "resource.intent", "about to create aws instance", job, res, '{"type": "g5"}')),
    ])  # fmt: skip
    _tx(conn, [
        ("UPDATE resources SET cloud_id = ?, rate_usd_per_hour = ?, state = ?, updated_at = ? WHERE id = ?",
         (f"i-{i:08x}", 1.0, "running", now, res)),
        ("INSERT INTO usage (resource_id, job_id, started_at, rate_usd_per_hour) VALUES (?,?,?,?)",
         (res, job, now, 1.0)),
        (_EVENT, (now, "resource.state", "intent -> running", job, res, None)),
    ])  # fmt: skip
    _tx(conn, [
        ("UPDATE resources SET state = ?, updated_at = ? WHERE id = ?", ("terminated", now, res)),
        ("UPDATE usage SET ended_at = ? WHERE resource_id = ? AND ended_at IS NULL", (now, res)),
        (_EVENT, (now, "resource.state", "running -> terminated", job, res, None)),
    ])  # fmt: skip


def _open(kind: str, path: Path) -> Ledger | sqlite3.Connection:
    if kind == "runctl":
        return Ledger(path)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def _worker(kind: str, path: str, rounds: int, barrier: Any, results: Any) -> None:
    handle: Any = _open(kind, Path(path))
    one_round = ledger_round if kind == "runctl" else raw_round
    barrier.wait()
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on one machine
    for i in range(rounds):
        one_round(handle, i)
    results.put((start, time.monotonic()))
    handle.close()


def run_config(kind: str, procs: int, rounds: int, work: Path) -> dict[str, object]:
    """``procs`` fresh processes, ``rounds`` rounds each, on a fresh ledger file."""
    path = work / f"{kind}-{procs}-{len(list(work.glob('*.db')))}.db"
    Ledger(path).close()  # the schema, migrated exactly as runctl would
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(kind, str(path), rounds, barrier, results)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    spans = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"a {kind} ledger worker exited with {w.exitcode}")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    with Ledger(path) as ledger:
        jobs = len(ledger.list_jobs())
        integrity = ledger.integrity_check()
    if integrity != "ok" or jobs != procs * rounds:
        raise SystemExit(
            f"{kind} × {procs}: integrity {integrity!r}, {jobs} jobs (expected {procs * rounds})"
        )
    ops = procs * rounds * OPS_PER_ROUND
    return {
        "name": f"{'runctl Ledger' if kind == 'runctl' else 'raw sqlite3'}, {procs} proc",
        "kind": kind,
        "procs": procs,
        "ops": ops,
        "wall_s": round(wall, 3),
        "ops_per_s": round(ops / wall, 1),
        "integrity": integrity,
    }


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, help="rounds per process (default 1000; 8 procs: a quarter)")
    parser.add_argument("--runs", type=int, help="runs per configuration (median; default 3)")
    args = parser.parse_args(argv or [])
    runs = args.runs or (1 if args.quick else 3)
    rounds = args.rounds or (100 if args.quick else 1000)
    with tempfile.TemporaryDirectory(prefix="runctl-bench-ledger-") as tmp:
        work = Path(tmp)
        configs = [("raw", 1, rounds), ("runctl", 1, rounds), ("runctl", 8, max(1, rounds // 4))]
        results: list[list[dict[str, object]]] = [[] for _ in configs]
        for _ in range(runs):  # interleaved, so drift in the machine's load hits all alike
            for found, config in zip(results, configs, strict=True):
                found.append(run_config(*config, work))
    # the median run of each configuration, by rate
    rows = [sorted(found, key=lambda r: float(r["ops_per_s"]))[len(found) // 2] for found in results]  # type: ignore[arg-type]
    for row in rows:
        row["runs"] = runs
    raw, one = (float(r["ops_per_s"]) for r in rows[:2])  # type: ignore[arg-type]
    for row, base in zip(rows, (raw, raw, one), strict=True):
        row["vs"] = round(float(row["ops_per_s"]) / base, 3)  # type: ignore[arg-type]
    print_table(
        f"Ledger ops/s ({OPS_PER_ROUND} ops per job round, one transaction each; 8 procs: aggregate)",
        ["configuration", "ops", "wall s", "ops/s", "÷ raw sqlite3 (1 proc)", "8 ÷ 1 proc"],
        [
            [rows[0]["name"], rows[0]["ops"], rows[0]["wall_s"], rows[0]["ops_per_s"], 1.0, ""],
            [rows[1]["name"], rows[1]["ops"], rows[1]["wall_s"], rows[1]["ops_per_s"], rows[1]["vs"], ""],
            [rows[2]["name"], rows[2]["ops"], rows[2]["wall_s"], rows[2]["ops_per_s"], "", rows[2]["vs"]],
        ],
    )
    write_results("ledger", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """As costs (seconds per operation): raw ops/s ÷ runctl ops/s, and 1-proc ÷ 8-proc aggregate."""
    raw, one, eight = rows
    return [
        Ratio("ledger", "ops/s, 1 process", f"{one['ops_per_s']} ops/s", "raw sqlite3, 1 proc",
              f"{raw['ops_per_s']} ops/s", float(raw["ops_per_s"]) / float(one["ops_per_s"])),  # type: ignore[arg-type]
        Ratio("ledger", "ops/s, 8 processes (aggregate)", f"{eight['ops_per_s']} ops/s", "runctl, 1 proc",
              f"{one['ops_per_s']} ops/s", float(one["ops_per_s"]) / float(eight["ops_per_s"])),  # type: ignore[arg-type]
    ]  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
