"""The agent's hang watchdog: detection latency against ``hang_timeout``, and its CPU cost.

*Latency*: the real agent (``run_agent``, local storage) runs a script that prints a line,
writes the time of that last line to a file, then hangs silently; a fake ``nvidia-smi`` on
``PATH`` reports 0 % GPU (as on a GPU machine without NVML: the costlier path, one subprocess
per look). The clock runs from the script's last line to the moment the watchdog declares it
hung (before SIGTERM). The goal: at most ``hang_timeout`` + one poll (the heartbeat).

*Overhead*: the CPU time of the watchdog's look (stat the log, the checkpoint directory and the
progress file; run ``nvidia-smi``: this process's time plus its children's) over many looks,
as CPU-seconds per minute of training at the poll interval. Goal: < 1 CPU-second per minute.

There is no peer (no other tool watches for hangs on the machine): the summary line is the
figure against its goal.

    ./dev bench watchdog          # or: python benchmarks/run.py [--quick] watchdog
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Ratio, print_table, write_results
from runctl.agent import runner
from runctl.agent.runner import AgentOptions, run_agent
from runctl.agent.watchdog import HangWatch
from runctl.storage.local import LocalStorage

HANGS = """
import sys, time
from pathlib import Path
print("working", flush=True)
Path(sys.argv[1]).write_text(repr(time.time()))
time.sleep(3600)
"""


def fake_gpu(work: Path) -> None:
    """``nvidia-smi`` at 0 % for two GPUs, first on PATH."""
    bin_dir = work / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 0\necho 0\n")
    smi.chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"


def latency(work: Path, timeout: float, poll: float, run: int) -> float:
    """Seconds from the script's last line to the watchdog's verdict."""
    declared: list[float] = []

    class Timed(HangWatch):
        def check(self) -> str | None:
            reason = super().check()
            if reason is not None:
                declared.append(time.time())
            return reason

    storage = LocalStorage(work / f"bucket-{run}")
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("hang.py")
        info.size = len(HANGS)
        tar.addfile(info, io.BytesIO(HANGS.encode()))
    storage.put_bytes("code.tar.gz", buffer.getvalue())
    last_line = work / f"last-line-{run}"
    options = AgentOptions(
        job_id=f"bench-{run}",
        script="hang.py",
        args=[str(last_line)],
        workdir=work / f"machine-{run}",
        heartbeat=poll,
        grace_period=0.5,
        hang_timeout=timeout,
    )
    original, runner.HangWatch = runner.HangWatch, Timed  # type: ignore[misc]
    try:
        result = run_agent(options, storage)
    finally:
        runner.HangWatch = original  # type: ignore[misc]
    if result.state != "hung" or not declared:
        raise SystemExit(f"the hanging script ended {result.state}, not hung: {result.detail}")
    return declared[0] - float(last_line.read_text())


def cpu_per_look(work: Path, looks: int) -> float:
    """CPU seconds of one watchdog look (this process + nvidia-smi), averaged over ``looks``."""
    (work / "ck").mkdir()
    (work / "log").write_text("x\n")
    watch = HangWatch(1e9, log_path=work / "log", checkpoint_dir=work / "ck", progress_file=work / "p")
    before_self = time.process_time()
    before_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(looks):
        watch.check()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = time.process_time() - before_self
    spent += (kids.ru_utime - before_kids.ru_utime) + (kids.ru_stime - before_kids.ru_stime)
    return spent / looks


def main(argv: list[str]) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    cases = [(2.0, 0.5), (2.0, 1.0)] if args.quick else [(2.0, 0.5), (5.0, 1.0), (10.0, 5.0)]
    runs = 2 if args.quick else 3
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fake_gpu(work)
        for n, (timeout, poll) in enumerate(cases):
            seconds = [latency(work, timeout, poll, n * 10 + r) for r in range(runs)]
            worst = max(seconds)
            rows.append({
                "case": f"hang_timeout {timeout:g}s, poll {poll:g}s",
                "goal_s": timeout + poll,
                "median_s": round(statistics.median(seconds), 2),
                "worst_s": round(worst, 2),
                "within_goal": worst <= timeout + poll,
            })  # fmt: skip
        per_look = cpu_per_look(work, 50 if args.quick else 200)
        for poll in (5.0, 1.0):
            rows.append({
                "case": f"watchdog CPU, poll {poll:g}s",
                "cpu_ms_per_look": round(per_look * 1000, 2),
                "cpu_s_per_minute": round(per_look * 60 / poll, 3),
                "goal_s": 1.0,
            })  # fmt: skip
    print_table(
        "hang watchdog",
        ["case", "figure", "goal"],
        [
            [r["case"], f"{r['worst_s']} s worst ({r['median_s']} median)", f"≤ {r['goal_s']} s"]
            if "worst_s" in r
            else [
                r["case"],
                f"{r['cpu_s_per_minute']} CPU-s/min ({r['cpu_ms_per_look']} ms/look)",
                "< 1 CPU-s/min",
            ]
            for r in rows
        ],
    )
    print(f"results: {write_results('watchdog', rows)}")
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """Each figure against its goal (< 1: within it)."""
    lines = []
    for r in rows:
        if "worst_s" in r:
            figure, goal = float(r["worst_s"]), float(r["goal_s"])  # type: ignore[arg-type]
            lines.append(
                Ratio(
                    "watchdog",
                    f"hang detection, {r['case']}",
                    f"{figure} s",
                    "goal",
                    f"{goal} s",
                    figure / goal,
                )
            )
        else:
            figure = float(r["cpu_s_per_minute"])  # type: ignore[arg-type]
            lines.append(
                Ratio("watchdog", str(r["case"]), f"{figure} CPU-s/min", "goal", "1 CPU-s/min", figure)
            )
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
