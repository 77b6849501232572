"""One entry point for every benchmark: `./dev bench [--quick] [NAME ...]` (default: all).

Each `benchmarks/bench_<name>.py` has a `main(argv)` that measures runctl against a peer in the
same run, prints its own table and writes JSON under benchmarks/results/, and returns its rows;
its `ratios(rows)` turns those rows into :class:`benchmarks.common.Ratio` lines. After the
selected benchmarks ran, one summary table of every ratio is printed and written as
``results/summary-<time>.json``. ``--quick`` runs smaller sizes (a smoke run, a few minutes).

A benchmark that fails is reported in the summary and makes the exit status 1; the others still
run, so one broken peer install does not hide every other figure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, print_table, write_results

#: What ``--quick`` passes to a benchmark whose options are not just ``--quick``.
QUICK_ARGS = {"s3": ["--big-mib", "64", "--small-count", "100", "--servers", "moto", "--runs", "1"]}


def s3_ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """bench_s3 returns one summary line per (server, case, direction): runctl vs its fastest peer."""
    lines = []
    for r in rows:
        peer = str(r["fastest_peer"])
        lines.append(
            Ratio(
                "s3",
                f"{r['direction']} {r['case']} ({r['server']})",
                f"{r['runctl_s']} s",
                peer,
                f"{r[f'{peer}_s']} s",
                float(r["runctl_vs_fastest_peer"]),  # type: ignore[arg-type]
            )
        )
    return lines


def run_one(name: str, quick: bool) -> list[Ratio]:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    argv = QUICK_ARGS.get(name, ["--quick"]) if quick else []
    rows = module.main(argv)
    to_ratios = getattr(module, "ratios", None) or {"s3": s3_ratios}[name]
    return to_ratios(rows)


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(available)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(available)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; available: {available}")
    summary: list[Ratio] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in args.names or available:
        print(f"\n=== {name} ===", flush=True)
        try:
            summary += run_one(name, args.quick)
        except (Exception, SystemExit) as exc:  # report, keep going with the other benchmarks
            traceback.print_exc()
            failed.append(f"{name}: {exc}")
    print_table(
        "Summary: runctl ÷ peer, measured side by side (> 1: runctl slower/bigger; < 1: faster)",
        ["bench", "what", "runctl", "peer", "peer value", "ratio"],
        [[r.bench, r.what, r.runctl, r.peer, r.peer_value, f"{r.ratio:.2f}"] for r in summary],
    )
    for line in failed:
        print(f"FAILED {line}")
    print(f"\n({time.monotonic() - started:.0f} s in all{', --quick' if args.quick else ''})")
    path = write_results("summary", [{**asdict(r), "quick": args.quick} for r in summary])
    print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
