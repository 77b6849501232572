"""The one storage interface jobs write to: a local directory or S3 (any S3-compatible endpoint).

Checkpoints, logs, code bundles and the job's status heartbeat all go through a :class:`Storage`.
A storage is *rooted*: ``S3Storage("s3://bucket/runs")`` and ``LocalStorage("/data/runs")``
take the same relative keys (``jobs/j-1/status.json``), ``/``-separated.

Contract, the same for every implementation (tests run it against both):

1. ``put_bytes`` / ``put_file`` store a whole object or nothing: a reader never sees half of one.
   ``put_file`` verifies what the server stored (MD5 against the returned ETag for S3).
2. ``get_bytes`` / ``get_file`` raise :class:`NotFoundError` for a missing key. ``get_file`` writes
   to a hidden temp name next to the destination and renames it into place only after the size
   and checksum check out, so a half-written download never looks complete; it sets the file's
   mtime to the object's, which is what lets :func:`runctl.storage.sync` skip it next time.
3. ``list(prefix)`` yields every object under ``prefix`` (all pages, sorted by key); with
   ``recursive=False`` it yields the objects directly under it plus one entry per
   sub-"directory" (a key ending in ``/``, ``is_dir`` true).
4. ``delete(keys)`` is idempotent: missing keys are fine.
5. ``upload_files`` / ``download_files`` move many files at once (S3: in parallel, multipart for
   large files) with the same guarantees as the single-file calls; a download refuses any key
   that would write outside its destination before it writes anything.
6. ``write_json`` / ``read_json`` store small JSON documents (the status heartbeat);
   ``read_json`` returns ``None`` when there is none yet.
7. ``publish_checkpoint`` uploads a checkpoint file or directory and writes its manifest *last*;
   ``list_checkpoints`` / ``latest_checkpoint`` see only checkpoints whose manifest exists, so an
   interrupted upload is never the latest. ``fetch_checkpoint`` downloads one into a staging
   directory and renames it into place. ``prune_checkpoints`` keeps the newest N (see
   :mod:`runctl.storage.checkpoints` for the grouping rules).

``progress`` arguments take a callable that is given byte counts as data moves (from worker
threads; it must be thread-safe; a retry may report a negative count to take back bytes).

Errors are :class:`runctl.core.errors.RunctlError` subclasses only: ``NotFoundError`` (66) for a
missing object or bucket, ``AuthError`` (77) for refused credentials, ``ValidationError`` (65)
for an unsafe key or a checksum mismatch, ``RetryExhaustedError`` (75) when throttling outlasted
the retries.
"""

from __future__ import annotations

import builtins
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runctl.core.checkpoints import is_complete_name, step_of
from runctl.core.errors import NotFoundError, ValidationError
from runctl.storage.atomic import is_temp_name
from runctl.storage.checkpoints import (
    MANIFEST_DIR,
    CheckpointFile,
    CheckpointGroup,
    Manifest,
    group_objects,
    join_key,
    manifest_key,
    plan_prune,
)
from runctl.storage.uri import safe_join

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object (or, with ``is_dir``, a sub-"directory" in a non-recursive listing)."""

    key: str
    size: int
    mtime: float
    etag: str | None = None
    is_dir: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "mtime": self.mtime,
            "etag": self.etag,
            "is_dir": self.is_dir,
        }


@dataclass(frozen=True)
class CheckpointRecord:
    """A complete checkpoint in storage: where it is and what its manifest says."""

    prefix: str
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def step(self) -> int | None:
        return self.manifest.step

    @property
    def key(self) -> str:
        """The object (file checkpoint) or the prefix (directory checkpoint) it lives under."""
        return join_key(self.prefix, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "key": self.key,
            "kind": self.manifest.kind,
            "size": self.manifest.size,
            "files": len(self.manifest.files),
            "created": self.manifest.created,
        }


class Storage(ABC):
    """Durable storage rooted at :attr:`url`. See the module docstring for the contract."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the root is: ``s3://bucket/prefix`` or an absolute local path."""

    # ---- primitives: each implementation provides these ---------------------------------

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` as ``key`` (whole or not at all)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The content of ``key``; :class:`NotFoundError` if there is none."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size, time and ETag of ``key``, or ``None`` when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` (a key prefix, not necessarily ending in ``/``)."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (missing ones are fine); returns how many were asked for."""

    @abstractmethod
    def upload_files(
        self, pairs: Sequence[tuple[Path, str]], *, progress: ProgressFn | None = None
    ) -> builtins.list[ObjectInfo]:
        """Upload each ``(local file, key)``; returns what was stored, in the same order."""

    @abstractmethod
    def download_files(
        self, pairs: Sequence[tuple[ObjectInfo, Path]], *, progress: ProgressFn | None = None
    ) -> builtins.list[Path]:
        """Download each ``(object, local path)`` atomically and verified; returns the paths."""

    # ---- built on the primitives ---------------------------------------------------------

    def put_file(self, key: str, path: Path, *, progress: ProgressFn | None = None) -> ObjectInfo:
        """Upload one file as ``key``."""
        return self.upload_files([(path, key)], progress=progress)[0]

    def get_file(self, key: str, path: Path, *, progress: ProgressFn | None = None) -> Path:
        """Download ``key`` to ``path`` (atomically, verified)."""
        info = self.stat(key)
        if info is None:
            raise NotFoundError(f"{self._describe(key)} does not exist", hint="check the key: runctl s3 ls")
        return self.download_files([(info, path)], progress=progress)[0]

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def write_json(self, key: str, value: Any) -> ObjectInfo:
        """Store ``value`` as a small JSON document (the status heartbeat, a manifest)."""
        data = json.dumps(value, indent=1, sort_keys=True, default=str).encode()
        return self.put_bytes(key, data, content_type="application/json")

    def read_json(self, key: str) -> Any | None:
        """The JSON document at ``key``, or ``None`` if there is none yet."""
        try:
            data = self.get_bytes(key)
        except NotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ValidationError(f"{self._describe(key)} is not valid JSON: {exc}") from None

    def _describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    # ---- checkpoints ---------------------------------------------------------------------

    def publish_checkpoint(
        self, source: Path, prefix: str, *, step: int | None = None, progress: ProgressFn | None = None
    ) -> CheckpointRecord:
        """Upload the checkpoint file or directory ``source`` under ``prefix``; manifest last.

        Publishing a name again replaces it: its old manifest is deleted first, so the
        checkpoint is never "complete" while its parts are being replaced.
        """
        name = source.name
        if not source.exists():
            raise NotFoundError(f"checkpoint {source} does not exist", hint="check the path")
        if not is_complete_name(name) or name == MANIFEST_DIR:
            raise ValidationError(
                f"{source} is a work-in-progress name (hidden, .tmp, .partial or .incomplete)",
                hint="publish the checkpoint after it has been renamed into place",
            )
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and not is_temp_name(p.name))
            pairs = [(p, join_key(prefix, name, p.relative_to(source).as_posix())) for p in files]
            kind = "dir"
        else:
            pairs = [(source, join_key(prefix, name))]
            kind = "file"
        self.delete([manifest_key(prefix, name)])
        stored = self.upload_files(pairs, progress=progress)
        base = join_key(prefix, name)
        manifest = Manifest(
            name=name,
            step=step if step is not None else step_of(name),
            kind=kind,
            created=time.time(),
            files=tuple(
                CheckpointFile(info.key[len(base) + 1 :] if kind == "dir" else name, info.size, info.etag)
                for info in stored
            ),
        )
        self.put_bytes(manifest_key(prefix, name), manifest.to_json(), content_type="application/json")
        return CheckpointRecord(prefix, manifest)

    def _manifests(self, prefix: str) -> dict[str, tuple[str, Manifest]]:
        found: dict[str, tuple[str, Manifest]] = {}
        for info in self.list(join_key(prefix, MANIFEST_DIR) + "/"):
            if not info.key.endswith(".json"):
                continue
            try:
                manifest = Manifest.from_json(self.get_bytes(info.key), key=info.key)
            except NotFoundError:  # deleted between list and get (a concurrent prune)
                continue
            found[manifest.name] = (info.key, manifest)
        return found

    def list_checkpoints(self, prefix: str) -> builtins.list[CheckpointRecord]:
        """Complete checkpoints under ``prefix``, oldest first (by step, then time)."""
        records = [CheckpointRecord(prefix, m) for _, m in self._manifests(prefix).values()]
        records.sort(key=lambda r: (r.step is not None, r.step or 0, r.manifest.created))
        return records

    def latest_checkpoint(self, prefix: str) -> CheckpointRecord | None:
        """The newest complete checkpoint under ``prefix``, or ``None``."""
        records = self.list_checkpoints(prefix)
        return records[-1] if records else None

    def fetch_checkpoint(
        self, record: CheckpointRecord, destination: Path, *, progress: ProgressFn | None = None
    ) -> Path:
        """Download ``record`` into the directory ``destination``; returns the checkpoint's path.

        Parts are checked against the manifest (size, ETag) and land in a hidden staging
        directory first; the checkpoint appears under its name only when all of it is there.
        """
        import shutil
        import uuid

        if destination.exists() and not destination.is_dir():
            raise ValidationError(f"destination {destination} is a file", hint="give a directory")
        destination.mkdir(parents=True, exist_ok=True)
        staging = destination / f".{record.name}.runctl-{uuid.uuid4().hex[:8]}.partial"
        manifest = record.manifest
        base = record.key
        final = safe_join(destination, record.name, what="checkpoint name")
        try:
            pairs = []
            for part in manifest.files:
                key = base if manifest.kind == "file" else join_key(base, part.path)
                info = self.stat(key)
                if (
                    info is None
                    or info.size != part.size
                    or (part.etag and info.etag and part.etag != info.etag)
                ):
                    raise ValidationError(
                        f"checkpoint {record.name}: {self._describe(key)} is missing "
                        "or differs from its manifest",
                        hint="it was changed after it was published; publish it again or use an older one",
                    )
                rel = part.path if manifest.kind == "dir" else record.name
                pairs.append((info, safe_join(staging, rel, what="checkpoint file")))
            self.download_files(pairs, progress=progress)
            source = staging if manifest.kind == "dir" else staging / record.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            source.replace(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def checkpoint_groups(self, prefix: str) -> dict[str, CheckpointGroup]:
        """Every candidate checkpoint under ``prefix`` with its objects and manifest."""
        base = join_key(prefix)
        groups = group_objects(
            prefix,
            ((o.key, o.size, o.mtime) for o in self.list(f"{base}/" if base else "")),
        )
        for name, (key, manifest) in self._manifests(prefix).items():
            group = groups.setdefault(name, CheckpointGroup(name))
            group.manifest, group.manifest_key = manifest, key
        return groups

    def prune_checkpoints(
        self, prefix: str, keep_last_n: int, *, dry_run: bool = False
    ) -> tuple[builtins.list[CheckpointGroup], builtins.list[CheckpointGroup]]:
        """Delete all but the newest ``keep_last_n`` checkpoints; returns (kept, removed)."""
        kept, doomed = plan_prune(self.checkpoint_groups(prefix), keep_last_n)
        if not dry_run:
            manifests = [g.manifest_key for g in doomed if g.manifest_key]
            self.delete(manifests)  # first: from here on none of them is "complete"
            self.delete([k for g in doomed for k in g.keys])
        return kept, doomed
