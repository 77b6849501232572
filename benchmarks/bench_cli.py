"""CLI start-up: `runctl --help` and `runctl jobs list` (10 000 jobs in the ledger) against
`python -c pass` (the floor) and `aws --version` (a peer CLI). Goal: --help ≤ 0.2 s."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, measure, peer_bin, print_table, runctl_bin, write_results


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


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs per command")
    quick = parser.parse_args(argv or []).quick
    few, many = (2, 3) if quick else (5, 10)
    runctl = runctl_bin()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        seed_ledger(state, 10_000)
        env = {"RUNCTL_STATE_DIR": str(state)}
        floor = measure("python -c pass", [sys.executable, "-c", "pass"], runs=many)
        aws = measure("aws --version", [str(peer_bin("aws")), "--version"], runs=few)
        helps = measure("runctl --help", [*runctl, "--help"], runs=many, env=env)
        listing = measure(
            "runctl jobs list (10k jobs, limit 50)", [*runctl, "jobs", "list"], runs=few, env=env
        )
        listing_all = measure(
            "runctl jobs list --limit 10000 -o json",
            [*runctl, "jobs", "list", "--limit", "10000", "-o", "json"],
            runs=max(2, few - 2),
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


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Each runctl command against `aws --version`; `--help` also against `python -c pass`."""
    walls = {str(r["name"]): float(r["wall_s"]) for r in rows}  # type: ignore[arg-type]
    lines = []
    for name, wall in walls.items():
        if not name.startswith("runctl"):
            continue
        peers = ["aws --version", "python -c pass"] if name == "runctl --help" else ["aws --version"]
        lines += [
            Ratio("cli", name, f"{wall:.3f} s", peer, f"{walls[peer]:.3f} s", wall / walls[peer])
            for peer in peers
        ]
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
