"""Checkpoints on disk: step parsing, ordering, latest complete one, pruning, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runctl.core.checkpoints import (
    atomic_write,
    is_complete_name,
    latest_checkpoint,
    list_checkpoints,
    prune,
    step_of,
)
from tests.conftest import REPO

SCRIPTS = REPO / "tests" / "scripts"


def touch(path: Path, data: bytes = b"x", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("ckpt-00001200.pt", 1200),
        ("ckpt-5.pkl", 5),
        ("epoch_3", 3),
        ("step10_v2.pt", 2),  # the last integer counts
        ("ckpt-7.tar.gz", 7),
        ("model.h5", None),  # digits in the extension are not a step
        ("best.pt", None),
        ("final", None),
    ],
)
def test_step_of(name: str, step: int | None) -> None:
    assert step_of(name) == step


@pytest.mark.parametrize(
    ("name", "complete"),
    [
        ("ckpt-1.pt", True),
        ("epoch_2", True),
        (".ckpt-1.pt.123.tmp", False),
        ("ckpt-1.pt.tmp", False),
        ("ckpt-1.pt.partial", False),
        ("ckpt-1.incomplete", False),
        (".hidden", False),
    ],
)
def test_in_progress_names_never_count(name: str, complete: bool) -> None:
    assert is_complete_name(name) is complete


def test_list_orders_by_step_then_time_and_skips_work_in_progress(tmp_path: Path) -> None:
    touch(tmp_path / "ckpt-10.pkl", mtime=300)
    touch(tmp_path / "ckpt-2.pkl", mtime=400)  # newer file, lower step: step wins
    touch(tmp_path / "best.pt", b"xxxx", mtime=500)  # unnumbered: before numbered ones
    touch(tmp_path / "ckpt-99.pkl.partial", mtime=600)
    touch(tmp_path / ".ckpt-100.pkl.42.tmp", mtime=600)
    touch(tmp_path / "epoch_5" / "weights.bin", b"abcdef")
    found = list_checkpoints(tmp_path)
    assert [c.path.name for c in found] == ["best.pt", "ckpt-2.pkl", "epoch_5", "ckpt-10.pkl"]
    assert [c.step for c in found] == [None, 2, 5, 10]
    sizes = {c.path.name: c.size for c in found}
    assert sizes["best.pt"] == 4 and sizes["epoch_5"] == 6  # a directory's size is its files'
    assert latest_checkpoint(tmp_path).path.name == "ckpt-10.pkl"
    assert found[0].to_dict()["step"] is None


def test_missing_or_empty_directory_has_no_checkpoints(tmp_path: Path) -> None:
    assert list_checkpoints(tmp_path / "nope") == []
    assert latest_checkpoint(tmp_path / "nope") is None
    touch(tmp_path / "only.tmp")
    assert latest_checkpoint(tmp_path) is None


def test_prune_keeps_the_newest_n(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4, 5):
        touch(tmp_path / f"ckpt-{step}.pkl")
    touch(tmp_path / "epoch_6" / "w.bin")
    touch(tmp_path / ".ckpt-7.pkl.1.tmp")  # in progress: never pruned
    would = prune(tmp_path, 2, dry_run=True)
    assert [c.step for c in would] == [1, 2, 3, 4]
    assert len(list_checkpoints(tmp_path)) == 6  # dry run removed nothing
    removed = prune(tmp_path, 2)
    assert [c.step for c in removed] == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt-7.pkl.1.tmp", "ckpt-5.pkl", "epoch_6"]
    assert prune(tmp_path, 2) == []
    assert prune(tmp_path, 10) == []


def test_prune_rotates_only_stepped_checkpoints(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        touch(tmp_path / f"ckpt-{step}.pkl", mtime=100 + step)
    touch(tmp_path / "best.pt", mtime=50)  # the script's own keepers, older than every step
    touch(tmp_path / "config.json", mtime=60)
    removed = prune(tmp_path, 2)
    assert [c.path.name for c in removed] == ["ckpt-1.pkl", "ckpt-2.pkl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "ckpt-3.pkl",
        "ckpt-4.pkl",
        "config.json",
    ]


def test_prune_never_removes_the_latest(tmp_path: Path) -> None:
    touch(tmp_path / "ckpt-1.pkl")
    with pytest.raises(ValueError):
        prune(tmp_path, 0)
    assert (tmp_path / "ckpt-1.pkl").exists()


def test_atomic_write_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "ckpt-3.pkl"
    assert atomic_write(target, lambda f: f.write(b"one")) == target
    atomic_write(target, lambda f: f.write(b"two"))
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-3.pkl"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ckpt-3.pkl"
    atomic_write(target, lambda f: f.write(b"good"))

    def fail(handle: object) -> None:
        handle.write(b"half")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-3.pkl"]
    with pytest.raises(OSError):
        atomic_write(tmp_path / "ckpt-4.pkl", fail)
    assert latest_checkpoint(tmp_path).step == 3


def test_a_process_killed_mid_save_never_leaves_a_half_file_as_latest(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "die_mid_save.py"), str(tmp_path)], capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    # the half-written step 20 exists only under its hidden temp name
    assert "ckpt-00000020.pkl" not in names
    temps = [n for n in names if n.startswith(".ckpt-00000020.pkl.") and n.endswith(".tmp")]
    assert len(temps) == 1
    assert (tmp_path / temps[0]).read_bytes().startswith(b"partial")
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.step == 10
    assert latest.path.read_bytes() == b"complete" * 1000
