"""CLI start-up: `runctl --help`, every command's `--help`, and `runctl jobs list` (10 000 jobs in
the ledger) against `python -c pass` (the floor) and `aws --version` (a peer CLI).
Goal: every --help ≤ 0.2 s; the table lists the slowest ones."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Measure, Ratio, measure, peer_bin, print_table, runctl_bin, write_results


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


def command_paths() -> list[list[str]]:
    """Every command and group below ``runctl``, as the words that name it (hidden ones skipped)."""
    import typer

    from runctl.cli import main as cli

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            if not sub.hidden:
                paths.append([*path, name])
                walk(sub, [*path, name])

    walk(typer.main.get_command(cli.app), [])
    return paths


def every_help(runctl: list[str], env: dict[str, str], runs: int) -> list[tuple[str, float]]:
    """(command, median wall of its --help), slowest first."""
    walls = [
        (
            " ".join(path),
            measure(" ".join(path), [*runctl, *path, "--help"], runs=runs, warmup=0, env=env).wall_s,
        )
        for path in command_paths()
    ]
    return sorted(walls, key=lambda item: -item[1])


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
        each = every_help(runctl, env, 1 if quick else 3)
        listing = measure(
            "runctl jobs list (10k jobs, limit 50)", [*runctl, "jobs", "list"], runs=few, env=env
        )
        listing_all = measure(
            "runctl jobs list --limit 10000 -o json",
            [*runctl, "jobs", "list", "--limit", "10000", "-o", "json"],
            runs=max(2, few - 2),
            env=env,
        )
    slowest = Measure(f"runctl {each[0][0]} --help (slowest of {len(each)})", each[0][1])
    median_help = Measure(
        f"runctl COMMAND --help (median of {len(each)})", statistics.median(w for _c, w in each)
    )
    rows = []
    for m in (floor, aws, helps, slowest, median_help, listing, listing_all):
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
    over = [(c, w) for c, w in each if w > 0.2]
    print_table(
        f"--help of every command: {len(over)} of {len(each)} over 0.2 s; the slowest ten",
        ["command", "wall s", "÷ python -c pass"],
        [[f"runctl {c} --help", round(w, 3), round(w / floor.wall_s, 1)] for c, w in each[:10]],
    )
    rows += [{"name": f"runctl {c} --help", "wall_s": round(w, 4), "every_help": True} for c, w in each]
    write_results("cli", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Each runctl command against `aws --version`; `--help` also against `python -c pass`."""
    walls = {str(r["name"]): float(r["wall_s"]) for r in rows}  # type: ignore[arg-type]
    lines = []
    for name, wall in walls.items():
        if not name.startswith("runctl") or any(r.get("every_help") and r["name"] == name for r in rows):
            continue
        peers = ["aws --version", "python -c pass"] if "--help" in name else ["aws --version"]
        lines += [
            Ratio("cli", name, f"{wall:.3f} s", peer, f"{walls[peer]:.3f} s", wall / walls[peer])
            for peer in peers
        ]
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
