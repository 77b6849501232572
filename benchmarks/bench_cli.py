"""CLI start-up: `runctl --help` and `runctl jobs list` (10 000 jobs in the ledger) against
`python -c pass` (the floor) and `aws --version` (a peer CLI). Goal: --help ≤ 0.2 s."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import measure, peer_bin, print_table, runctl_bin, write_results


def seed_ledger(state: Path, jobs: int) -> None:
    import os

    os.environ["RUNCTL_STATE_DIR"] = str(state)
    from runctl.core.ledger import Ledger

    ledger = Ledger.open_default()
    with ledger._tx() as conn:  # one transaction: seeding speed is not what is measured
        for i in range(jobs):
            conn.execute(
                "INSERT INTO jobs (id, name, provider, state, script, created_at, ended_at, exit_code)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (f"j-{i:08x}", f"job{i % 50}", "local", "succeeded", "train.py", 1e9 + i, 1e9 + i + 60, 0),
            )
    ledger.close()


def main() -> list[dict[str, object]]:
    runctl = runctl_bin()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        seed_ledger(state, 10_000)
        env = {"RUNCTL_STATE_DIR": str(state)}
        floor = measure("python -c pass", [sys.executable, "-c", "pass"], runs=10)
        aws = measure("aws --version", [str(peer_bin("aws")), "--version"], runs=5)
        helps = measure("runctl --help", [*runctl, "--help"], runs=10, env=env)
        listing = measure("runctl jobs list (10k jobs, limit 50)", [*runctl, "jobs", "list"], runs=5, env=env)
        listing_all = measure(
            "runctl jobs list --limit 10000 -o json",
            [*runctl, "jobs", "list", "--limit", "10000", "-o", "json"],
            runs=3,
            env=env,
        )
    rows = []
    for m in (floor, aws, helps, listing, listing_all):
        rows.append(
            {
                "name": m.name,
                "wall_s": round(m.wall_s, 4),
                "vs_aws": round(m.wall_s / aws.wall_s, 3),
                "vs_python": round(m.wall_s / floor.wall_s, 2),
            }
        )
    print_table(
        "CLI start-up (median wall)",
        ["command", "wall s", "÷ aws --version", "÷ python -c pass"],
        [[r["name"], r["wall_s"], r["vs_aws"], r["vs_python"]] for r in rows],
    )
    write_results("cli", rows)
    return rows


if __name__ == "__main__":
    main()
