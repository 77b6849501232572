"""One entry point for every benchmark: `./dev bench [NAME ...]` (default: all).

Each `benchmarks/bench_<name>.py` has a `main()` that measures runctl against a peer in the
same run, prints a table of ratios and writes JSON under benchmarks/results/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(names: list[str]) -> None:
    available = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    unknown = set(names) - set(available)
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; available: {available}")
    for name in names or available:
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
