"""`runctl local example` against `python example`: wall time and peak RSS of the whole process
tree. The difference is runctl's overhead (start-up, ledger, log tee, supervision)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, Ratio, measure, print_table, runctl_bin, write_results

EXAMPLE = ROOT / "examples" / "train_numpy.py"


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    runs = 2 if parser.parse_args(argv or []).quick else 5
    args = ["--steps", "2000", "--save-every", "500"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"RUNCTL_STATE_DIR": str(Path(tmp) / "state"), "RUNCTL_CHECKPOINT_DIR": str(Path(tmp) / "ck")}
        plain = measure(
            "python example", [sys.executable, str(EXAMPLE), *args], runs=runs, sample_rss=True, env=env
        )
        wrapped = measure(
            "runctl local example",
            [*runctl_bin(), "local", "--no-resume", str(EXAMPLE), "--", *args],
            runs=runs,
            sample_rss=True,
            env=env,
        )
    rows = [
        {
            "name": m.name,
            "wall_s": round(m.wall_s, 4),
            "peak_rss_mib": round(m.peak_rss_mib or 0, 1),
            "wall_ratio": round(m.wall_s / plain.wall_s, 3),
            "rss_ratio": round((m.peak_rss_mib or 0) / (plain.peak_rss_mib or 1), 3),
        }
        for m in (plain, wrapped)
    ]
    print_table(
        "runctl local vs python (median wall, peak tree RSS)",
        ["command", "wall s", "RSS MiB", "wall ÷ python", "RSS ÷ python"],
        [[r["name"], r["wall_s"], r["peak_rss_mib"], r["wall_ratio"], r["rss_ratio"]] for r in rows],
    )
    write_results("local", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Wall time and peak RSS of `runctl local example` against `python example`."""
    plain, wrapped = rows
    return [
        Ratio("local", "example: wall", f"{wrapped['wall_s']} s", "python example",
              f"{plain['wall_s']} s", float(wrapped["wall_ratio"])),  # type: ignore[arg-type]
        Ratio("local", "example: peak RSS (tree)", f"{wrapped['peak_rss_mib']} MiB", "python example",
              f"{plain['peak_rss_mib']} MiB", float(wrapped["rss_ratio"])),  # type: ignore[arg-type]
    ]  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
