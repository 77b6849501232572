"""The code bundle: the project directory as a gzipped tarball the agent unpacks on the machine.

What goes in: inside a git work tree, exactly what git would consider part of the project —
tracked files plus untracked files that are not ignored (``git ls-files --cached --others
--exclude-standard``), so ``.gitignore`` is honoured the way the user already wrote it. Outside
git, every file except the usual heavy or private directories (``.git``, virtual environments,
caches, ``checkpoints``). The bundle holds plain files and directories only, never a link (the
agent refuses links, see :mod:`runctl.storage.archive`): a symlink that stays inside the project
is stored as a copy of what it points to (a directory's files, without the links found in it;
a link to a directory that contains the link itself is left out), a symlink that leaves the
project is left out, and hard-linked files are stored as separate copies. Member names are
relative, sorted, and owned by nobody, so the bundle carries no local user or absolute path.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from runctl.core.errors import NotFoundError, ValidationError

DEFAULT_EXCLUDES = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        "checkpoints",
        ".ipynb_checkpoints",
        ".tox",
    }
)


def project_files(root: Path) -> list[Path]:
    """Files of the project at ``root``, relative to it, sorted."""
    if not root.is_dir():
        raise NotFoundError(f"project directory {root} does not exist", hint="check --project-dir")
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        names = [Path(n) for n in listed.decode().split("\0") if n]
        return sorted(n for n in names if (root / n).is_file() or (root / n).is_symlink())
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git work tree (or no git): walk with the default excludes
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in DEFAULT_EXCLUDES)
        base = Path(directory).relative_to(root)
        found.extend(base / f for f in files if not f.endswith((".pyc", ".pyo")))
    return sorted(found)


def build_bundle(root: Path, destination: Path, *, must_contain: str | None = None) -> Path:
    """Write the project at ``root`` to ``destination`` (.tar.gz); check ``must_contain`` is in it."""
    root = root.resolve()
    files = project_files(root)
    if must_contain is not None and Path(must_contain) not in files:
        raise ValidationError(
            f"{must_contain} is not part of the project bundle from {root}",
            hint="give the script's path relative to the project directory, and make sure it is "
            "not ignored by .gitignore",
        )

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    # dereference: links become copies of their targets, hard links separate files
    with tarfile.open(destination, "w:gz", dereference=True) as tar:
        for path, name in _contents(root, files):
            tar.add(path, arcname=name.as_posix(), recursive=False, filter=anonymous)
    return destination


def _contents(root: Path, files: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(file to read, name in the bundle): the project's files with its links resolved as the
    module docstring says."""
    for name in files:
        path = root / name
        if not path.is_symlink():
            yield path, name
            continue
        target = path.resolve()
        if not target.is_relative_to(root):
            continue
        if target.is_file():
            yield target, name
        elif target.is_dir() and not path.parent.resolve().is_relative_to(target):
            for directory, subdirs, found in os.walk(target):
                subdirs[:] = sorted(d for d in subdirs if d not in DEFAULT_EXCLUDES)
                base = Path(directory)
                for file in sorted(found):
                    if (base / file).is_file() and not (base / file).is_symlink():
                        yield base / file, name / base.relative_to(target) / file
