"""Unpacking a tarball without writing outside its destination, on any Python 3.11 patch level.

The one function runctl unpacks archives with (the code bundle on the agent's machine; any
archive added later goes through it too). It does not use ``tarfile``'s ``extractall``: its
``filter=`` argument does not exist before Python 3.11.4, and where it does, its path check is
defeated by a symlink chain longer than ``PATH_MAX`` (CVE-2025-4517). So runctl decides itself:

1. Only regular files and directories are accepted. Links (symbolic or hard), devices and
   FIFOs are refused: runctl's own archives never need them (the code bundle stores a link
   that stays inside the project as a copy of what it points to, see
   :mod:`runctl.workflows.bundle`).
2. Every name must be relative with normal components only (no absolute path, no ``..``, no
   empty component, no NUL); a leading ``./`` is accepted and dropped.
3. The whole archive is checked before anything is written: a refused archive writes nothing.
4. Writing never follows a link, whatever is already in the destination: the path is walked one
   component at a time through directory descriptors opened with ``O_NOFOLLOW`` (no path is
   ever resolved as a whole, so ``PATH_MAX`` plays no part), and each file is written under a
   fresh temporary name and renamed into place, so an existing hard link is replaced rather
   than written through.
5. What is written is private to the user: files keep only the owner's permission bits from
   the archive (always at least read/write), directories are 0700. Modification times are kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from runctl.core.errors import ValidationError
from runctl.storage.uri import check_relative_key

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error)


class _Refused(Exception):
    """A member or the destination breaks a rule; the message says which."""


def safe_extract(archive: Path, destination: Path, *, what: str = "archive") -> list[PurePosixPath]:
    """Unpack the tarball ``archive`` (any compression) into ``destination``; returns the names
    of the files written. Raises :class:`ValidationError` naming ``what`` and the member at
    fault when the archive breaks a rule of the module docstring, or cannot be read or written."""
    try:
        with tarfile.open(archive) as tar:
            members = [(member, _checked_name(member)) for member in tar.getmembers()]
            for member, name in members:
                _check_type(member, name)
            destination.mkdir(parents=True, exist_ok=True, mode=0o700)
            root = os.open(destination, os.O_RDONLY | os.O_DIRECTORY)
            try:
                return [
                    name for member, name in members if name is not None and _write(tar, member, name, root)
                ]
            finally:
                os.close(root)
    except _Refused as exc:
        raise ValidationError(
            f"the {what} cannot be unpacked safely: {exc}",
            hint="runctl unpacks only plain files and directories that stay inside the destination; "
            "rebuild the archive (for a code bundle: let runctl build it with --sync-code)",
        ) from None
    except (*_READ_ERRORS, OSError) as exc:
        raise ValidationError(
            f"the {what} {archive} cannot be unpacked: {exc}",
            hint="it is damaged or not a tarball; rebuild and upload it again",
        ) from None


def _checked_name(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's relative name (None for the archive's root ``.``), or refused."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if member.isdir() else name
    if name in ("", "."):
        if member.isdir():
            return None
        raise _Refused(f"member {member.name!r} has no file name")
    try:
        return check_relative_key(name, what="member")
    except ValidationError as exc:
        raise _Refused(exc.message) from None


def _check_type(member: tarfile.TarInfo, name: PurePosixPath | None) -> None:
    if member.isreg() or member.isdir():
        return
    if member.issym() or member.islnk():
        kind = "a symbolic link" if member.issym() else "a hard link"
        raise _Refused(f"member {str(name)!r} is {kind} (to {member.linkname!r}); links are not accepted")
    kind = "a device" if member.isdev() else "a FIFO" if member.isfifo() else "not a regular file"
    raise _Refused(f"member {str(name)!r} is {kind}")


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, name: PurePosixPath | None, root: int) -> bool:
    """Write one member under the directory descriptor ``root``; True for a file."""
    if name is None:
        return False
    parts = name.parts if member.isdir() else name.parts[:-1]
    directory = _open_dirs(root, parts, name)
    try:
        if member.isdir():
            return False
        _write_file(tar, member, name, directory)
        return True
    finally:
        if directory != root:
            os.close(directory)


def _open_dirs(root: int, parts: tuple[str, ...], name: PurePosixPath) -> int:
    """The descriptor of ``root/parts...``, creating missing directories, following no link."""
    current = root
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o700, dir_fd=current)
        try:
            opened = os.open(part, _DIR_FLAGS, dir_fd=current)
        except OSError as exc:
            if current != root:
                os.close(current)
            raise _Refused(
                f"member {str(name)!r}: {part!r} in the destination is a link or not a directory "
                f"({exc.strerror})"
            ) from None
        if current != root:
            os.close(current)
        current = opened
    return current


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, name: PurePosixPath, directory: int) -> None:
    source = tar.extractfile(member)
    if source is None:  # not reachable for a regular member; refuse rather than guess
        raise _Refused(f"member {str(name)!r} has no data")
    temp = f".runctl-unpack-{secrets.token_hex(6)}"
    mode = (member.mode & 0o700) | 0o600
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(source, out)
        os.fchmod(fd, mode)
        with contextlib.suppress(OverflowError, ValueError, OSError):  # an absurd mtime: keep now
            os.utime(fd, (member.mtime, member.mtime))
        try:
            os.replace(temp, name.name, src_dir_fd=directory, dst_dir_fd=directory)
        except IsADirectoryError:
            raise _Refused(f"member {str(name)!r} would replace a directory") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=directory)
        raise
    finally:
        os.close(fd)
