"""A local directory as storage: the embedded default (no account, no server, no network).

Keys map to files under the root (``jobs/j-1/status.json`` → ``ROOT/jobs/j-1/status.json``);
every key goes through :func:`runctl.storage.uri.safe_join`, so no key reaches outside the root.
Writes are atomic (temp name + rename) and verified by size; listings skip runctl's own temp
files. Copies run one at a time: on one disk, parallel copies do not go faster.
"""

from __future__ import annotations

import builtins
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from runctl.core.errors import NotFoundError, StateDirError, ValidationError
from runctl.storage.atomic import is_temp_name, prepare_parent, publish, temp_path
from runctl.storage.base import ObjectInfo, ProgressFn, Storage
from runctl.storage.uri import safe_join

_CHUNK = 1 << 20


class LocalStorage(Storage):
    """Storage in the directory ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise ValidationError(
                f"storage root {self.root} is a file", hint="set [storage] uri to a directory or an s3:// URI"
            )

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return safe_join(self.root, key.rstrip("/"))

    def _info(self, key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        return ObjectInfo(key=key, size=stat.st_size, mtime=stat.st_mtime)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        path = self._path(key)
        self._prepare(path)
        temp = temp_path(path)
        try:
            temp.write_bytes(data)
            publish(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return self._info(key, path)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{self._describe(key)} does not exist", hint="check the key") from None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return self._info(key, path) if path.is_file() else None

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(directory) if directory else self.root
        if not start.is_dir():
            return
        seen_dirs: set[str] = set()
        for key, path in sorted(self._walk(start)):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if not recursive and "/" in rest:
                sub = prefix + rest.split("/", 1)[0] + "/"
                if sub not in seen_dirs:
                    seen_dirs.add(sub)
                    yield ObjectInfo(key=sub, size=0, mtime=0.0, is_dir=True)
                continue
            try:
                yield self._info(key, path)
            except FileNotFoundError:  # removed while we listed
                continue

    def _walk(self, start: Path) -> Iterator[tuple[str, Path]]:
        for dirpath, _dirnames, filenames in os.walk(start):
            base = Path(dirpath)
            for name in filenames:
                if not is_temp_name(name):
                    path = base / name
                    yield path.relative_to(self.root).as_posix(), path

    def delete(self, keys: Iterable[str]) -> int:
        count = 0
        for key in keys:
            count += 1
            path = self._path(key)
            path.unlink(missing_ok=True)
            self._prune_empty_dirs(path.parent)
        return count

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, or gone
                return
            directory = directory.parent

    def _prepare(self, path: Path) -> None:
        try:
            prepare_parent(path)
        except ValidationError as exc:
            raise StateDirError(str(exc), hint=f"check the storage root {self.root}") from None

    def upload_files(
        self, pairs: Sequence[tuple[Path, str]], *, progress: ProgressFn | None = None
    ) -> builtins.list[ObjectInfo]:
        stored = []
        for source, key in pairs:
            path = self._path(key)
            self._prepare(path)
            _copy(source, path, progress)
            stored.append(self._info(key, path))
        return stored

    def download_files(
        self, pairs: Sequence[tuple[ObjectInfo, Path]], *, progress: ProgressFn | None = None
    ) -> builtins.list[Path]:
        done = []
        for info, destination in pairs:
            prepare_parent(destination)
            _copy(self._path(info.key), destination, progress)
            done.append(destination)
        return done


def _copy(source: Path, destination: Path, progress: ProgressFn | None) -> None:
    """Copy via a temp file, check the size, keep the source's mtime, rename into place."""
    temp = temp_path(destination)
    try:
        try:
            src = source.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(
                f"{source} does not exist (or is not a file)", hint="check the path"
            ) from None
        with src, temp.open("wb") as dst:
            stat = os.fstat(src.fileno())
            if progress is None:
                shutil.copyfileobj(src, dst, _CHUNK)
            else:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    progress(len(chunk))
        if temp.stat().st_size != stat.st_size:
            raise ValidationError(
                f"copying {source} to {destination}: size changed during the copy",
                hint="the file was being written; copy it again once it is complete",
            )
        publish(temp, destination, mtime=stat.st_mtime)
    finally:
        temp.unlink(missing_ok=True)
