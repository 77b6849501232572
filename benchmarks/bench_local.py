"""`runctl local example` against `python example`: wall time and peak RSS of the whole process
tree. The difference is runctl's overhead (start-up, ledger, log tee, supervision)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, measure, print_table, runctl_bin, write_results

EXAMPLE = ROOT / "examples" / "train_numpy.py"


def main() -> list[dict[str, object]]:
    args = ["--steps", "2000", "--save-every", "500"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"RUNCTL_STATE_DIR": str(Path(tmp) / "state"), "RUNCTL_CHECKPOINT_DIR": str(Path(tmp) / "ck")}
        plain = measure(
            "python example", [sys.executable, str(EXAMPLE), *args], runs=5, sample_rss=True, env=env
        )
        wrapped = measure(
            "runctl local example",
            [*runctl_bin(), "local", "--no-resume", str(EXAMPLE), "--", *args],
            runs=5,
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


if __name__ == "__main__":
    main()
