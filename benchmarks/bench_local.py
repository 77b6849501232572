"""`runctl local` against python running the same script (benchmarks/workload.py).

Three measures, each against python in the same run (the machine is shared: read the ratios):

* **Start-up.** A script that only exits, under ``runctl local`` and as ``python -c pass``: the
  wall-time difference is what runctl adds before and after a job (goal: ≤ 0.25 s), and the peak
  RSS of the runctl process (goal: ≤ python's + 25 MiB).
* **Tee throughput.** A script that writes SIZE MiB to stdout: runctl copies it to the job's log
  file and to its own stdout. MiB/s = SIZE ÷ (wall − the same run's start-up) (goal: ≥ 200).
* **Supervision cost.** A script that burns SECONDS of CPU (a log line each second): runctl's own
  CPU time (user + sys) over the script's (goal: ≤ 1 %). CPU time, not wall time, which this
  shared machine makes too noisy.

Peak RSS and CPU come from ``wait4`` (Linux): the process's own, plus that of the children it
waited for; the script reports its own CPU, which is subtracted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, print_table, runctl_bin, write_results

WORKLOAD = Path(__file__).resolve().with_name("workload.py")


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + sys, waited-for children included)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def median_run(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> tuple[float, float, float]:
    run(argv, env, cwd)  # warm-up: page cache, .pyc files
    samples = [run(argv, env, cwd) for _ in range(runs)]
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))  # type: ignore[return-value]


def row(what: str, runctl: float, unit: str, python: float, goal: str, ratio: float) -> dict[str, object]:
    return {"what": what, "runctl": round(runctl, 3), "unit": unit, "python": round(python, 3), "goal": goal,
            "ratio": round(ratio, 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, less output, 10 s of CPU")
    parser.add_argument("--runs", type=int, default=None, help="runs per start-up figure (median)")
    args = parser.parse_args(argv or [])
    runs = args.runs or (3 if args.quick else 7)
    size_mib, cpu_s = (256, 10.0) if args.quick else (1024, 60.0)
    python, local = [sys.executable], [*runctl_bin(), "local", "--no-resume", str(WORKLOAD), "--"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {"RUNCTL_STATE_DIR": str(work / "state"), "RUNCTL_CHECKPOINT_DIR": str(work / "ck")}
        floor = median_run([*python, "-c", "pass"], env, work, runs)
        start = median_run([*local, "pass"], env, work, runs)
        py_out = median_run([*python, str(WORKLOAD), "output", str(size_mib)], env, work, max(1, runs // 3))
        rc_out = median_run([*local, "output", str(size_mib)], env, work, max(1, runs // 3))
        py_pass = median_run([*python, str(WORKLOAD), "pass"], env, work, runs)
        result = work / "cpu.txt"
        _wall, _rss, total_cpu = run([*local, "cpu", str(cpu_s), str(result)], env, work)
        script_cpu = float(result.read_text())
    runctl_cpu = total_cpu - script_cpu
    py_tp = size_mib / max(py_out[0] - py_pass[0], 1e-3)
    rc_tp = size_mib / max(rc_out[0] - start[0], 1e-3)
    rows = [
        row("start-up: wall over python -c pass", start[0] - floor[0], "s", floor[0], "<= 0.25 s",
            start[0] / floor[0]),
        row("start-up: peak RSS", start[1], "MiB", floor[1], "<= python + 25 MiB", start[1] / floor[1]),
        row(f"tee: {size_mib} MiB of stdout", rc_tp, "MiB/s", py_tp, ">= 200 MiB/s", py_tp / rc_tp),
        row(f"supervision: CPU over a {cpu_s:.0f} s CPU-bound script", runctl_cpu, "s", script_cpu, "<= 1 %",
            runctl_cpu / script_cpu),
    ]  # fmt: skip
    print_table(
        "runctl local vs python (median; ratio: runctl's cost ÷ python's; the last one ÷ the script's CPU)",
        ["what", "runctl", "unit", "python", "goal", "ratio"],
        [[r["what"], r["runctl"], r["unit"], r["python"], r["goal"], r["ratio"]] for r in rows],
    )
    write_results("local", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Each measure as runctl's cost ÷ python's (supervision: ÷ the script's own CPU)."""
    peers = ["python", "python", "python", "the script's CPU"]
    return [
        Ratio("local", str(r["what"]), f"{r['runctl']} {r['unit']}", peer,
              f"{r['python']} {'s' if peer != 'python' else r['unit']}", float(r["ratio"]))  # type: ignore[arg-type]
        for peer, r in zip(peers, rows, strict=True)
    ]  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
