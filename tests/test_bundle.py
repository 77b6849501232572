"""The code bundle honours .gitignore inside git, default excludes outside it."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from runctl.core.errors import ValidationError
from runctl.workflows.bundle import build_bundle, project_files


def make_project(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "ckpt-1.pt").write_bytes(b"x" * 10)
    (root / ".venv").mkdir()
    (root / ".venv" / "big.so").write_bytes(b"x")
    (root / "secret.env").write_text("KEY=1\n")


def test_outside_git_the_default_excludes_apply(tmp_path: Path) -> None:
    make_project(tmp_path)
    names = {p.as_posix() for p in project_files(tmp_path)}
    assert names == {"train.py", "pkg/model.py", "secret.env"}


def test_inside_git_gitignore_decides(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / ".gitignore").write_text("checkpoints/\n.venv/\nsecret.env\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    names = {p.as_posix() for p in project_files(tmp_path)}
    assert names == {".gitignore", "train.py", "pkg/model.py"}


def test_bundle_round_trip_and_missing_script(tmp_path: Path) -> None:
    project = tmp_path / "p"
    make_project(project)
    (project / "outside-link").symlink_to(tmp_path)
    bundle = build_bundle(project, tmp_path / "code.tar.gz", must_contain="train.py")
    with tarfile.open(bundle) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"train.py", "pkg/model.py", "secret.env"}
    assert all(m.uid == 0 and m.uname == "" for m in members.values())
    with pytest.raises(ValidationError, match="not part of the project"):
        build_bundle(project, tmp_path / "x.tar.gz", must_contain="nope.py")


def test_the_bundle_holds_no_links_and_unpacks_safely(tmp_path: Path) -> None:
    """Links inside the project are stored as copies (the agent refuses link members); a link
    that leaves the project, or a directory link to its own ancestor, is left out."""
    from runctl.storage.archive import safe_extract

    project = tmp_path / "p"
    make_project(project)
    (project / "model-link.py").symlink_to("pkg/model.py")
    (project / "pkg-link").symlink_to("pkg")
    (project / "pkg" / "up").symlink_to("..")
    (project / "hard.py").hardlink_to(project / "train.py")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    bundle = build_bundle(project, tmp_path / "code.tar.gz")
    with tarfile.open(bundle) as tar:
        members = tar.getmembers()
    assert all(m.isreg() for m in members), [(m.name, m.type) for m in members]
    names = {m.name for m in members}
    assert {"model-link.py", "pkg-link/model.py", "hard.py", "train.py"} <= names
    assert not any(n.startswith("pkg/up") for n in names)
    written = safe_extract(bundle, tmp_path / "out")
    assert (tmp_path / "out" / "pkg-link" / "model.py").read_text() == "X = 1\n"
    assert len(written) == len(members)
