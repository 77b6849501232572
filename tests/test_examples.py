"""The bundled examples under `runctl local`: they train (the loss goes down), runctl does not
change what they compute, and the PyTorch one stops, saves and resumes when torch is installed."""

from __future__ import annotations

import importlib.util
import itertools
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runctl.core.checkpoints import step_of
from runctl.core.ledger import LEDGER_FILE, Ledger
from tests.conftest import EXAMPLES, run_cli
from tests.test_local_run import Background, background, stopped_step  # noqa: F401  (fixture)

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def losses(output: str) -> list[tuple[int, float]]:
    return [(int(s), float(x)) for s, x in re.findall(r"^step=(\d+) loss=([\d.]+)$", output, re.MULTILINE)]


def assert_trains(points: list[tuple[int, float]], *, factor: float) -> None:
    assert len(points) >= 5, points
    steps = [s for s, _ in points]
    assert steps == sorted(steps)
    first, last = points[0][1], points[-1][1]
    assert last < first * factor, points  # it learned something


def test_numpy_example_trains_under_runctl(isolated_env: Path, tmp_path: Path) -> None:
    result = run_cli("local", str(EXAMPLES / "train_numpy.py"), "--", "--steps", "200", "--save-every", "50")
    assert result.returncode == 0, result.stderr
    points = losses(result.stdout)
    assert_trains(points, factor=0.6)
    values = [x for _, x in points]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(values))  # gradient descent on a convex loss
    assert "done: step=200" in result.stdout
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        (job,) = ledger.list_jobs()
    assert (job.state, job.name) == ("succeeded", "train_numpy")
    assert job.last_checkpoint and step_of(Path(job.last_checkpoint).name) == 200

    # runctl changes nothing about the computation: the plain run prints the same lines
    plain = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_numpy.py"), "--steps", "200", "--save-every", "50"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == result.stdout
    assert (tmp_path / "checkpoints" / "ckpt-00000200.pkl").is_file()  # ./checkpoints without runctl


@needs_torch
def test_torch_example_trains_under_runctl(isolated_env: Path) -> None:
    result = run_cli(
        "local", str(EXAMPLES / "train_torch.py"), "--", "--steps", "80", "--save-every", "40", timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^device=(cpu|cuda)", result.stdout, re.MULTILINE)
    assert_trains(losses(result.stdout), factor=0.5)
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        (job,) = ledger.list_jobs()
    assert job.state == "succeeded"
    assert job.last_checkpoint and job.last_checkpoint.endswith("ckpt-00000080.pt")


@needs_torch
def test_torch_example_stops_on_sigterm_and_resumes(
    background: Callable[..., Background],  # noqa: F811
    isolated_env: Path,
) -> None:
    bg = background(
        "--name", "torchy", "--grace-period", "60s", str(EXAMPLES / "train_torch.py"),
        "--", "--steps", "100000", "--sleep", "0.02", "--save-every", "1000",
    )  # fmt: skip
    job = bg.running_job()
    bg.wait_for_log(job, r"step=20 ")
    bg.signal(signal.SIGTERM)
    assert bg.wait(timeout=120) == 143, bg.stderr
    with Ledger(isolated_env / LEDGER_FILE) as ledger:
        job = ledger.get_job(job.id)
    assert job.state == "interrupted"
    step = stopped_step(Path(job.log_path or "").read_text())
    assert job.last_checkpoint and job.last_checkpoint.endswith(f"ckpt-{step:08d}.pt")

    resumed = run_cli(
        "local",
        "--name",
        "torchy",
        str(EXAMPLES / "train_torch.py"),
        "--",
        "--steps",
        str(step + 10),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {step}\n" in resumed.stdout
    assert f"done: step={step + 10} " in resumed.stdout
