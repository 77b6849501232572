"""Unpacking archives (runctl.storage.archive): nothing is written outside the destination, on
any Python patch level, whatever the archive holds or the destination already contains."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runctl.core.errors import ValidationError
from runctl.storage.archive import safe_extract
from tests.support.hostile_tar import link_chain_escape, plain_escapes


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``site/outside`` (with a victim file) next to ``site/m/code``, the destination."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim.txt").write_text("original\n")
    assert len(str(tmp_path / "m" / "code")) < 120, "the CVE tarball needs a short destination"
    return tmp_path


def test_the_cve_2025_4517_link_chain_writes_nothing_outside(site: Path) -> None:
    archive = link_chain_escape(site / "x.tar.gz", up=2, outside="outside")
    before = tree(site / "outside")
    with pytest.raises(ValidationError, match="symbolic link") as raised:
        safe_extract(archive, site / "m" / "code", what="code bundle")
    assert "code bundle" in raised.value.message and raised.value.hint
    assert tree(site / "outside") == before
    assert (site / "outside" / "victim.txt").read_text() == "original\n"
    assert tree(site / "m" / "code") == set()  # refused before anything was written


@pytest.mark.parametrize("label", ["dotdot", "absolute", "symlink_out", "hardlink_abs", "device"])
def test_plain_escapes_are_refused_and_nothing_is_written(site: Path, label: str) -> None:
    archive = plain_escapes(site / "archives")[label]
    with pytest.raises(ValidationError, match="cannot be unpacked safely"):
        safe_extract(archive, site / "m" / "code")
    assert tree(site / "m" / "code") == set()
    assert not (site / "escaped.txt").exists() and not Path("/tmp/runctl-escaped-absolute.txt").exists()


def test_a_link_already_in_the_destination_is_never_followed(site: Path) -> None:
    dest = site / "m" / "code"
    dest.mkdir(parents=True)
    (dest / "pkg").symlink_to(site / "outside")  # planted, or left by an earlier run
    (dest / "hard.txt").hardlink_to(site / "outside" / "victim.txt")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("hard.txt", "pkg/victim.txt"):
            info = tarfile.TarInfo(name)
            info.size = 6
            tar.addfile(info, io.BytesIO(b"pwned\n"))
    (site / "a.tar").write_bytes(buffer.getvalue())
    with pytest.raises(ValidationError, match="'pkg' in the destination is a link"):
        safe_extract(site / "a.tar", dest)
    assert (site / "outside" / "victim.txt").read_text() == "original\n"  # not through the hard link
    assert (dest / "hard.txt").read_text() == "pwned\n"  # replaced: a new file of its own


def test_a_normal_archive_unpacks_privately_with_its_tree(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        entries = [("./", tarfile.DIRTYPE, 0o755), ("./pkg/", tarfile.DIRTYPE, 0o777),
                   ("./pkg/run.sh", tarfile.REGTYPE, 0o4777), ("./a.py", tarfile.REGTYPE, 0o644)]  # fmt: skip
        for name, kind, mode in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 1_000_000
            info.size = 3 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"x=1") if kind == tarfile.REGTYPE else None)
    (tmp_path / "a.tgz").write_bytes(buffer.getvalue())
    written = safe_extract(tmp_path / "a.tgz", tmp_path / "out")
    assert [p.as_posix() for p in written] == ["pkg/run.sh", "a.py"]
    assert (tmp_path / "out" / "pkg" / "run.sh").stat().st_mode & 0o7777 == 0o700  # no set-id, no group
    assert (tmp_path / "out" / "a.py").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out" / "pkg").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "out" / "a.py").stat().st_mtime == 1_000_000
    assert not [p for p in (tmp_path / "out").rglob(".runctl-unpack-*")]


def test_a_damaged_archive_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(ValidationError, match="cannot be unpacked"):
        safe_extract(tmp_path / "bad.tar.gz", tmp_path / "out")


def test_agent_run_on_the_cve_bundle_exits_with_a_clear_error(site: Path) -> None:
    store = site / "store"
    store.mkdir()
    link_chain_escape(store / "code.tar.gz", up=2, outside="outside")
    before = tree(site / "outside")
    result = subprocess.run(
        [sys.executable, "-m", "runctl", "agent", "run", "--job-id", "j-x", "--storage", str(store),
         "--workdir", str(site / "m"), "train.py"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 65, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "code bundle" in errors[0] and "symbolic link" in errors[0]
    assert "hint:" in result.stderr
    assert tree(site / "outside") == before
    assert (site / "outside" / "victim.txt").read_text() == "original\n"
    assert json.loads((store / "status.json").read_text())["state"] == "failed_setup"
