"""Checkpoints in storage: the manifest that marks one complete, and grouping for keep-last-N.

Layout under a checkpoint prefix ``P`` (the same in S3 and in a local directory)::

    P/ckpt-00001200.pt                      a file checkpoint
    P/epoch_3/model.bin, P/epoch_3/opt.bin   a directory checkpoint
    P/.runctl-manifests/epoch_3.json         its manifest, written after every part is stored

A checkpoint is *complete* only once its manifest exists; the manifest is the last object written
and the first one deleted. So an upload cut short (Ctrl-C, spot reclaim, crash, network) leaves
parts without a manifest, and such parts are never "latest". The manifest sits in a hidden
folder so that a checkpoint directory synced down to a laptop still reads correctly with
:mod:`runctl.core.checkpoints` (names starting with ``.`` never count there).

Grouping (``runctl s3 cleanup``): every first path component under ``P`` is one candidate. When
``P`` holds manifests it is *managed*: only manifest-bearing groups are checkpoints, and a group
without a manifest whose step is older than the oldest kept checkpoint is an abandoned upload and
goes too (a newer one finished after it). When ``P`` holds no manifest (checkpoints copied there
by ``sync`` or another tool), a group is a checkpoint when its name carries a step number and is
not work in progress (``.tmp``/``.partial``/hidden). Anything else under ``P`` (logs, status
files, names without a number) is never touched. Order is the one of local checkpoints: by step,
then time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runctl.core.checkpoints import is_complete_name, step_of
from runctl.core.errors import ValidationError

MANIFEST_DIR = ".runctl-manifests"
MANIFEST_FORMAT = "runctl-checkpoint/1"


def join_key(prefix: str, *parts: str) -> str:
    """Join key parts with single ``/`` (an empty prefix means the root)."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p.strip("/"))


def manifest_key(prefix: str, name: str) -> str:
    return join_key(prefix, MANIFEST_DIR, f"{name}.json")


@dataclass(frozen=True)
class CheckpointFile:
    """One stored part of a checkpoint: its key relative to the checkpoint, size and ETag."""

    path: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class Manifest:
    """What a complete checkpoint consists of. Written last; deleted first."""

    name: str
    step: int | None
    kind: str  # "file" | "dir"
    created: float
    files: tuple[CheckpointFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        body = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "step": self.step,
            "kind": self.kind,
            "created": self.created,
            "size": self.size,
            "files": [{"path": f.path, "size": f.size, "etag": f.etag} for f in self.files],
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, *, key: str) -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            return cls(
                name=str(body["name"]),
                step=body["step"],
                kind=str(body["kind"]),
                created=float(body["created"]),
                files=tuple(
                    CheckpointFile(str(f["path"]), int(f["size"]), f.get("etag")) for f in body["files"]
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(
                f"checkpoint manifest {key} is not valid: {exc}",
                hint="the checkpoint it describes cannot be trusted; remove the manifest or re-publish",
            ) from None


@dataclass
class CheckpointGroup:
    """Every object under ``prefix/name`` (one candidate checkpoint), and its manifest if any."""

    name: str
    keys: list[str] = field(default_factory=list)
    size: int = 0
    mtime: float = 0.0
    manifest: Manifest | None = None
    manifest_key: str | None = None

    @property
    def step(self) -> int | None:
        return self.manifest.step if self.manifest else step_of(self.name)

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    def sort_key(self) -> tuple[bool, int, float]:
        created = self.manifest.created if self.manifest else self.mtime
        return (self.step is not None, self.step or 0, created)

    def all_keys(self) -> list[str]:
        """Manifest first: deleting in this order never leaves a "complete" half checkpoint."""
        return ([self.manifest_key] if self.manifest_key else []) + self.keys

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "complete": self.complete,
            "objects": len(self.keys),
            "size": self.size,
            "mtime": self.mtime,
        }


def group_objects(prefix: str, objects: Iterable[tuple[str, int, float]]) -> dict[str, CheckpointGroup]:
    """Group ``(key, size, mtime)`` by first component under ``prefix``; manifests are left out."""
    base = join_key(prefix)
    base = f"{base}/" if base else ""
    groups: dict[str, CheckpointGroup] = {}
    for key, size, mtime in objects:
        if not key.startswith(base):
            continue
        name = key[len(base) :].split("/", 1)[0]
        if not name or name == MANIFEST_DIR:
            continue
        group = groups.setdefault(name, CheckpointGroup(name))
        group.keys.append(key)
        group.size += size
        group.mtime = max(group.mtime, mtime)
    return groups


def plan_prune(
    groups: dict[str, CheckpointGroup], keep_last_n: int
) -> tuple[list[CheckpointGroup], list[CheckpointGroup]]:
    """Split the groups into (kept checkpoints, groups to delete), per the module's rules."""
    if keep_last_n < 1:
        raise ValidationError(
            f"--keep-last-n must be at least 1, got {keep_last_n}",
            hint="the newest checkpoint is never removed; use 'runctl s3 rm --recursive' to delete all",
        )
    managed = any(g.manifest for g in groups.values())
    if managed:
        checkpoints = sorted((g for g in groups.values() if g.complete), key=CheckpointGroup.sort_key)
    else:
        checkpoints = sorted(
            (g for g in groups.values() if g.step is not None and is_complete_name(g.name)),
            key=CheckpointGroup.sort_key,
        )
    kept, doomed = checkpoints[-keep_last_n:], checkpoints[:-keep_last_n]
    if managed and kept:
        oldest_kept = kept[0].sort_key()
        abandoned = [
            g
            for g in groups.values()
            if not g.complete and g.step is not None and g.sort_key()[:2] < oldest_kept[:2]
        ]
        doomed.extend(sorted(abandoned, key=CheckpointGroup.sort_key))
    return kept, doomed
