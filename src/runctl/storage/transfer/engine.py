"""The transfer engine: what a call to :meth:`S3Transfer.upload` or :meth:`S3Transfer.download`
does with its files (one request, or parts, or ranges), on the wire of :mod:`.wire`, scheduled by
:mod:`.scheduling`.

* **Control calls** (create/complete/abort a multipart upload, HEAD, list, delete) go through
  the shared boto3 client and :func:`runctl.clients.aws.call`: retried and classified like every
  other AWS call. **Data requests** go over :class:`~.wire.Wire`.
* **Sizes.** Objects up to ``multipart_threshold`` (64 MiB) go in one request; larger ones in
  ``part_size`` (8 MiB, as aws-cli) parts, grown so a file never needs more than 10,000 parts.
  Downloads of large objects use at most ``max_concurrency`` ranged GETs of at least
  ``min_range`` (64 MiB) each: few, large ranges, because moto's server copies the whole object
  for every ranged GET, while real S3 and s3rver gain from a handful of parallel ranges.
* **Retries.** Each request is retried under one :class:`RetryPolicy` (throttling, 5xx,
  connection errors), at most ``max_attempts`` times; the first error that outlasts it cancels
  the whole call, and every registered cleanup runs (temp files removed, uploads aborted).

Why this engine and not another (boto3's TransferManager, the CRT client, s5cmd, obstore), with
the figures, is in docs/benchmarks.md ("S3 transfers").
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runctl.clients import aws as session
from runctl.core.errors import NotFoundError, RunctlError
from runctl.core.retry import RetryPolicy
from runctl.storage import checksums
from runctl.storage.atomic import prepare_parent
from runctl.storage.base import ObjectInfo, ProgressFn
from runctl.storage.transfer.download import RangedDownload, get_small
from runctl.storage.transfer.scheduling import Batch, run_tasks
from runctl.storage.transfer.settings import TransferSettings
from runctl.storage.transfer.upload import MultipartUpload, put_small
from runctl.storage.transfer.wire import Wire


class S3Transfer:
    """Moves files between this machine and one bucket. Thread-safe; reuse it for many calls."""

    def __init__(self, client: Any, bucket: str, settings: TransferSettings | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.settings = settings or TransferSettings()
        self.wire = Wire(client, bucket, max_connections=max(10, self.settings.max_concurrency * 2))

    def policy(self, operation: str) -> RetryPolicy:
        """The retry policy of one data request."""
        return RetryPolicy(
            max_attempts=self.settings.max_attempts,
            initial_delay=0.25,
            max_delay=8.0,
            deadline=None,
            name=operation,
        )

    def upload(
        self, pairs: Sequence[tuple[Path, str]], *, progress: ProgressFn | None = None
    ) -> list[ObjectInfo]:
        """Upload ``(file, key)`` pairs in parallel; returns what S3 stored, in order."""
        sizes = []
        for path, _key in pairs:
            try:
                if not path.is_file():
                    raise FileNotFoundError
                sizes.append(path.stat().st_size)
            except OSError:
                raise NotFoundError(
                    f"{path} does not exist or is not a file", hint="check the path"
                ) from None
        results: list[ObjectInfo | MultipartUpload | None] = [None] * len(pairs)
        batch = Batch(progress)

        def put(index: int, path: Path, key: str, size: int) -> None:
            results[index] = put_small(self, batch, path, key, size)

        def tasks() -> Iterator[Callable[[], None]]:
            for index, ((path, key), size) in enumerate(zip(pairs, sizes, strict=True)):
                if size <= self.settings.multipart_threshold:
                    yield functools.partial(put, index, path, key, size)
                else:  # started only now: its parts are next in line
                    upload = results[index] = MultipartUpload(self, batch, path, key, size)
                    yield from upload.tasks()

        run_tasks(batch, tasks(), self.settings.max_concurrency)
        stored = [r.result if isinstance(r, MultipartUpload) else r for r in results]
        return [info for info in stored if info is not None]

    def download(
        self, pairs: Sequence[tuple[ObjectInfo, Path]], *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """Download ``(object, path)`` pairs in parallel: verified, atomic, mtime kept."""
        for _info, destination in pairs:
            prepare_parent(destination)
        batch = Batch(progress)

        def tasks() -> Iterator[Callable[[], None]]:
            for info, destination in pairs:
                in_parts = bool(checksums.MULTIPART_ETAG.match(info.etag or ""))
                if info.size == 0 or (info.size <= self.settings.multipart_threshold and not in_parts):
                    yield functools.partial(get_small, self, batch, info, destination)
                else:
                    yield from RangedDownload(self, batch, info, destination).tasks()

        run_tasks(batch, tasks(), self.settings.max_concurrency)
        return [destination for _info, destination in pairs]

    def head(self, key: str, *, part_number: int | None = None) -> dict[str, Any]:
        """HEAD of ``key`` (of one of its parts with ``part_number``), retried and classified."""
        extra: dict[str, Any] = {"PartNumber": part_number} if part_number else {}
        return dict(
            session.call(
                self.client.head_object,
                operation=f"look up s3://{self.bucket}/{key}",
                Bucket=self.bucket,
                Key=key,
                **extra,
            )
        )

    def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload, best effort: a bucket lifecycle rule (or
        ``aws s3api list-multipart-uploads``) finds what a failed abort leaves."""
        with contextlib.suppress(RunctlError):
            session.call(
                self.client.abort_multipart_upload,
                operation=f"abort multipart upload of s3://{self.bucket}/{key}",
                policy=RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=2.0, deadline=30.0),
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
