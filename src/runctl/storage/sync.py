"""Copy a directory tree to or from storage, skipping what is already there.

A file is *unchanged* (and not transferred) when its size matches and:

* uploading: the local file is not newer than the stored object (an upload stamps the object
  later than the file it came from), or it is newer but its MD5 equals the object's plain ETag
  (touched, not changed);
* downloading: the local mtime equals the object's (runctl sets a downloaded file's mtime to the
  object's LastModified, as ``aws s3 sync`` does), or its MD5 equals the plain ETag (the mtime is
  then fixed so the next run is quick), or, when the ETag is not an MD5, the local file is newer.

``delete=True`` also removes what the destination has and the source does not (only under the
given prefix/directory). Plans are made before anything moves, and every key is checked against
the traversal rules first: a bad key fails the whole sync with nothing written. So a second sync
of an unchanged tree transfers nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.core.errors import NotFoundError, ValidationError
from runctl.storage.atomic import is_temp_name
from runctl.storage.base import ObjectInfo, ProgressFn, Storage
from runctl.storage.uri import safe_join, validate_key

_MTIME_SLACK = 1.0  # S3 keeps whole seconds


def dir_prefix(prefix: str) -> str:
    """A key prefix as a "directory": empty, or ending in one ``/``."""
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


@dataclass
class SyncResult:
    """What a copy or sync did (or, with ``dry_run``, would do)."""

    direction: str  # "upload" | "download"
    transferred: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "transferred": len(self.transferred),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "files": self.transferred,
            "deleted_files": self.deleted,
        }


def local_files(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` by relative ``/`` path (runctl temp files left out)."""
    found: dict[str, Path] = {}
    for dirpath, _dirs, names in os.walk(root):
        base = Path(dirpath)
        for name in names:
            path = base / name
            if not is_temp_name(name) and path.is_file():
                found[path.relative_to(root).as_posix()] = path
    return found


def _md5(path: Path) -> str:
    md5 = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            md5.update(chunk)
    return md5.hexdigest()


def _plain_etag(info: ObjectInfo) -> bool:
    return bool(info.etag) and len(info.etag or "") == 32 and "-" not in (info.etag or "")


def _upload_unchanged(path: Path, remote: ObjectInfo) -> bool:
    stat = path.stat()
    if stat.st_size != remote.size:
        return False
    if stat.st_mtime <= remote.mtime + _MTIME_SLACK:
        return True
    return _plain_etag(remote) and _md5(path) == remote.etag


def _download_unchanged(path: Path, remote: ObjectInfo) -> bool:
    stat = path.stat()
    if stat.st_size != remote.size:
        return False
    if abs(stat.st_mtime - remote.mtime) < _MTIME_SLACK:
        return True
    if _plain_etag(remote):
        if _md5(path) == remote.etag:
            os.utime(path, (remote.mtime, remote.mtime))
            return True
        return False
    return stat.st_mtime > remote.mtime


def upload_tree(
    source: Path,
    storage: Storage,
    prefix: str,
    *,
    only_changed: bool = True,
    delete: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    on_plan: Any = None,
) -> SyncResult:
    """Upload the directory ``source`` under ``prefix`` (``only_changed``: skip what is there)."""
    if not source.exists():
        raise NotFoundError(f"{source} does not exist", hint="check the path")
    if not source.is_dir():
        raise ValidationError(
            f"{source} is a file, not a directory", hint="use 'runctl s3 upload' for one file"
        )
    started = time.monotonic()
    base = dir_prefix(prefix)
    files = local_files(source)
    remote = {o.key[len(base) :]: o for o in storage.list(base)} if (only_changed or delete) else {}
    result = SyncResult("upload", dry_run=dry_run)
    pairs = []
    for rel, path in sorted(files.items()):
        key = validate_key(base + rel, arg=str(path))
        if only_changed and rel in remote and _upload_unchanged(path, remote[rel]):
            result.unchanged += 1
            continue
        pairs.append((path, key))
        result.transferred.append(key)
        result.bytes += path.stat().st_size
    doomed = sorted(base + rel for rel in remote if rel not in files) if delete else []
    result.deleted = doomed
    if on_plan is not None:
        on_plan(result)
    if not dry_run:
        storage.upload_files(pairs, progress=progress)
        if doomed:
            storage.delete(doomed)
    result.seconds = time.monotonic() - started
    return result


def download_tree(
    storage: Storage,
    prefix: str,
    destination: Path,
    *,
    only_changed: bool = True,
    delete: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    on_plan: Any = None,
) -> SyncResult:
    """Download every object under ``prefix`` into ``destination`` (a directory)."""
    if destination.exists() and not destination.is_dir():
        raise ValidationError(
            f"destination {destination} is a file, not a directory",
            hint="give a directory (it is created if missing)",
        )
    started = time.monotonic()
    base = dir_prefix(prefix)
    objects = [o for o in storage.list(base) if not o.key.endswith("/")]  # "folder" markers hold nothing
    targets = [(o, safe_join(destination, o.key[len(base) :])) for o in objects]  # all checked first
    result = SyncResult("download", dry_run=dry_run)
    pairs = []
    for info, path in targets:
        if only_changed and path.is_file() and _download_unchanged(path, info):
            result.unchanged += 1
            continue
        pairs.append((info, path))
        result.transferred.append(info.key)
        result.bytes += info.size
    wanted = {path for _, path in targets}
    existing = local_files(destination) if delete and destination.is_dir() else {}
    doomed = sorted(rel for rel, path in existing.items() if path not in wanted)
    result.deleted = doomed
    if on_plan is not None:
        on_plan(result)
    if not dry_run:
        if pairs:
            destination.mkdir(parents=True, exist_ok=True)
        storage.download_files(pairs, progress=progress)
        for rel in doomed:
            existing[rel].unlink(missing_ok=True)
    result.seconds = time.monotonic() - started
    return result
