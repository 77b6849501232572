"""SIGTERM → checkpoint-safe latency: how long after a SIGTERM is the work safely on disk?

The script (benchmarks/save_on_sigterm.py) holds S MiB of state and saves it with
``runctl.Checkpointer`` on SIGTERM. Under runctl: ``runctl local`` runs it; SIGTERM goes to
runctl, which forwards it to the script's process group, waits for the script to save and exit,
and records the job ``interrupted`` in the ledger. The peer: the same script run directly with
python, SIGTERM sent to it. Both clocks run from the signal until the process that got it has
exited, which is after the checkpoint was fsynced and renamed (and, for runctl, after the ledger
records the outcome); each run is then checked (runctl: exit 143, job ``interrupted``, its
``last_checkpoint`` complete and of full size; python: exit 0, the checkpoint of full size), or the
benchmark fails. The two alternate run by run, so a noisy neighbour hits both alike.

    ./dev bench shutdown          # or: python benchmarks/run.py [--quick] shutdown
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SAVE_ON_SIGTERM, Ratio, print_table, runctl_bin, wait_for_file, write_results

MiB = 1 << 20


def sigterm_to_exit(argv: list[str], env: dict[str, str], ready: Path) -> tuple[float, int]:
    """Start ``argv``, wait until the script is ready, SIGTERM it; seconds until it exited."""
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_file(ready, proc)
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=600)
    return time.perf_counter() - started, code


def checked_size(path: Path | None, size_mib: int, who: str) -> int:
    if path is None or not path.is_file() or path.stat().st_size < size_mib * MiB:
        raise SystemExit(f"{who}: no complete {size_mib} MiB checkpoint after SIGTERM (found {path})")
    return path.stat().st_size


def run_python(size_mib: int, work: Path) -> float:
    checkpoints = work / "ck-python"
    ready = work / "ready"
    env = {"RUNCTL_CHECKPOINT_DIR": str(checkpoints)}
    seconds, code = sigterm_to_exit(
        [sys.executable, str(SAVE_ON_SIGTERM), str(size_mib), str(ready)], env, ready
    )
    if code != 0:
        raise SystemExit(f"python script exited {code} after SIGTERM (expected 0)")
    checked_size(checkpoints / "ckpt-00000001.pkl", size_mib, "python")
    shutil.rmtree(checkpoints)
    return seconds


def run_runctl(size_mib: int, work: Path) -> float:
    from runctl.core.ledger import LEDGER_FILE, Ledger

    checkpoints = work / "ck-runctl"
    ready = work / "ready"
    state = work / "state"
    argv = [*runctl_bin(), "local", "--no-resume", "--name", "bench-shutdown", "--grace-period", "600s"]
    argv += ["--checkpoint-dir", str(checkpoints), str(SAVE_ON_SIGTERM), "--", str(size_mib), str(ready)]
    seconds, code = sigterm_to_exit(argv, {"RUNCTL_STATE_DIR": str(state)}, ready)
    with Ledger(state / LEDGER_FILE) as ledger:
        job = ledger.list_jobs(name="bench-shutdown", limit=1)[0]
    if code != 143 or job.state != "interrupted":
        raise SystemExit(f"runctl local exited {code}, job {job.state} (expected 143, interrupted)")
    checked_size(Path(job.last_checkpoint) if job.last_checkpoint else None, size_mib, "runctl local")
    shutil.rmtree(checkpoints)
    return seconds


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 and 64 MiB, 2 runs each")
    parser.add_argument("--sizes", help="checkpoint sizes in MiB, comma-separated (default 64,512)")
    parser.add_argument("--runs", type=int, help="runs per size and tool (median; default 3)")
    args = parser.parse_args(argv or [])
    sizes = [int(s) for s in (args.sizes or ("16,64" if args.quick else "64,512")).split(",")]
    runs = args.runs or (2 if args.quick else 3)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="runctl-bench-shutdown-") as tmp:
        work = Path(tmp)
        for size in sizes:
            times: dict[str, list[float]] = {"python": [], "runctl": []}
            for _ in range(runs):  # alternate, so drift in the machine's load hits both
                times["python"].append(run_python(size, work))
                times["runctl"].append(run_runctl(size, work))
            python_s, runctl_s = (statistics.median(times[k]) for k in ("python", "runctl"))
            rows.append({
                "size_mib": size, "runs": runs, "python_s": round(python_s, 3),
                "runctl_s": round(runctl_s, 3), "overhead_s": round(runctl_s - python_s, 3),
                "ratio": round(runctl_s / python_s, 3),
            })  # fmt: skip
            print(f"  {size} MiB: python {python_s:.3f}s  runctl local {runctl_s:.3f}s", flush=True)
    print_table(
        "SIGTERM → checkpoint safe on disk (median seconds, signal to exit; ratio = runctl ÷ python)",
        ["checkpoint", "python script", "runctl local", "runctl extra s", "ratio"],
        [[f"{r['size_mib']} MiB", r["python_s"], r["runctl_s"], r["overhead_s"], r["ratio"]] for r in rows],
    )
    write_results("shutdown", rows)
    return rows


def ratios(rows: list[dict[str, object]]) -> list[Ratio]:
    """SIGTERM → safe, per checkpoint size: `runctl local` ÷ the script run by python."""
    return [
        Ratio("shutdown", f"SIGTERM → checkpoint safe, {r['size_mib']} MiB", f"{r['runctl_s']} s",
              "python script", f"{r['python_s']} s", float(r["ratio"]))  # type: ignore[arg-type]
        for r in rows
    ]  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
