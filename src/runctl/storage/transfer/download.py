"""Downloads: one GET for a small object, parallel ranged GETs written in place for a large one.

Each download writes to a hidden temp file (:mod:`runctl.storage.atomic`) that is renamed over
the destination only once verified; any failure (Ctrl-C included) removes it. What is checked:
the size, then the CRC-32 runctl stored in metadata when there is one (each range's thread
checksums its own range and the CRCs are joined), else the ETag: a plain ETag is the object's
MD5 (hashed front to back: those objects are fetched in smaller ranges, in order, and a thread
hashes each range once every range before it has landed), a multipart ETag is checked part by
part (the ranges then follow the object's own part boundaries, the part size read with one
``HEAD ?partNumber=1``). Objects whose ETag is not an MD5 (SSE-KMS, SSE-C) are checked by size.
Ranged GETs carry ``If-Match: <etag>``: an object replaced mid-download fails cleanly instead
of mixing two versions.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.core.errors import CloudProviderError
from runctl.storage import checksums
from runctl.storage.atomic import publish, temp_path
from runctl.storage.base import ObjectInfo
from runctl.storage.transfer.files import Fd, OrderedMD5, pwrite_all
from runctl.storage.transfer.scheduling import Batch
from runctl.storage.transfer.wire import stream_body

if TYPE_CHECKING:
    from runctl.storage.transfer.engine import S3Transfer


def get_small(transfer: S3Transfer, batch: Batch, info: ObjectInfo, destination: Path) -> None:
    """One GET of a whole object, checked by its stored CRC-32 or its MD5 ETag, then published."""
    batch.check()
    where = f"s3://{transfer.bucket}/{info.key}"
    temp = temp_path(destination)
    batch.on_exit(lambda: temp.unlink(missing_ok=True))

    def attempt() -> tuple[int, Any, str]:
        batch.check()
        response = transfer.wire.send("GetObject", "GET", info.key, stream=True)
        stored_crc = checksums.parse_crc32(response.headers.get(checksums.HEADER))
        hasher: Any = checksums.Crc32() if stored_crc is not None else hashlib.md5()
        written = 0
        try:
            with temp.open("wb") as handle:
                for chunk in stream_body(response, operation=f"download {where}"):
                    batch.check()
                    handle.write(chunk)
                    hasher.update(chunk)
                    written += len(chunk)
                    batch.advance(len(chunk))
        except BaseException:
            batch.advance(-written)
            raise
        return written, response.headers, hasher.hexdigest()

    written, headers, actual = transfer.policy(f"download {where}").call(attempt)
    stored_crc = checksums.parse_crc32(headers.get(checksums.HEADER))
    if stored_crc is not None:
        checksums.verify_download(where, info.size, written, crc=(stored_crc, int(actual, 16)))
    else:
        etag = info.etag or checksums.etag_of(headers)
        trusted = checksums.md5_etag_trusted(headers)
        checksums.verify_download(where, info.size, written, etag=etag if trusted else None, md5=actual)
    publish(temp, destination, mtime=info.mtime)


class RangedDownload:
    """One large object as ranged GETs written in place; the task that lands the last range
    verifies the whole and publishes it.

    A HEAD first reads the object's metadata (the stored CRC-32); without one, a multipart ETag
    costs a second HEAD (``?partNumber=1``, whose answer some stores strip of metadata) for the
    part size, which decides how the ranges are cut.
    """

    def __init__(self, transfer: S3Transfer, batch: Batch, info: ObjectInfo, destination: Path) -> None:
        self.transfer, self.batch, self.info, self.destination = transfer, batch, info, destination
        self.where = f"s3://{transfer.bucket}/{info.key}"
        head = transfer.head(info.key)
        # the version every range asks for (If-Match)
        self.etag: str | None = info.etag or (head.get("ETag") or "").strip('"') or None
        multipart = checksums.MULTIPART_ETAG.match(self.etag or "")
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}  # MinIO: Runctl-Crc32
        self.stored_crc = checksums.parse_crc32(metadata.get(checksums.METADATA_KEY))
        self.part_size: int | None = None
        if multipart and self.stored_crc is None:
            part_size = int(transfer.head(info.key, part_number=1)["ContentLength"])
            if part_size > 0 and math.ceil(info.size / part_size) == int(multipart.group(2)):
                self.part_size = part_size  # else uneven parts: checked by size only
        ordered = (
            self.stored_crc is None
            and self.part_size is None
            and bool(checksums.MD5_ETAG.match(self.etag or ""))
        )
        self.range_size = transfer.settings.range_size(info.size, self.part_size, ordered=ordered)
        self.count = math.ceil(info.size / self.range_size)
        self.part_digests: dict[int, bytes] = {}
        self.range_crcs: dict[int, int] = {}
        self.remaining = self.count
        self.trusted = True  # every answer said its ETag is an MD5
        self._lock = threading.Lock()
        self.temp = temp_path(destination)
        self._fd = Fd(os.open(self.temp, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644))
        self._hasher: OrderedMD5 | None = None
        batch.on_exit(self._cleanup)  # before anything else can fail: no fd or temp file is left
        os.ftruncate(self._fd.fd, info.size)
        if ordered:
            self._hasher = OrderedMD5(self._fd.fd, info.size, self.range_size)

    def tasks(self) -> Iterator[Callable[[], None]]:
        for index in range(self.count):
            yield functools.partial(self._fetch, index)

    def _cleanup(self) -> None:
        if self._hasher is not None:
            self._hasher.stop()
        self._fd.close()
        self.temp.unlink(missing_ok=True)

    def _fetch(self, index: int) -> None:
        self.batch.check()
        start = index * self.range_size
        end = min(start + self.range_size, self.info.size)
        operation = f"download {self.where} bytes {start}-{end - 1}"
        digests, crc, headers = self.transfer.policy(operation).call(
            lambda: self._get_range(start, end, operation)
        )
        if self._hasher is not None:
            self._hasher.ready(index)
        with self._lock:
            self.part_digests.update(digests)
            self.range_crcs[index] = crc
            self.trusted = self.trusted and checksums.md5_etag_trusted(headers)
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self._finish()

    def _get_range(self, start: int, end: int, operation: str) -> tuple[dict[int, bytes], int, Any]:
        """One attempt at one range: written in place, its CRC-32 (or its parts' MD5s) taken."""
        self.batch.check()
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if self.etag:
            headers["If-Match"] = f'"{self.etag}"'
        response = self.transfer.wire.send("GetObject", "GET", self.info.key, headers=headers, stream=True)
        part_size = self.part_size
        digests: dict[int, bytes] = {}
        position, md5, crc = start, hashlib.md5(), 0
        try:
            for chunk in stream_body(response, operation=operation):
                self.batch.check()
                if self.stored_crc is not None:
                    crc = zlib.crc32(chunk, crc)
                view = memoryview(chunk)
                while view:
                    take = len(view)
                    if part_size:
                        take = min(take, part_size - (position % part_size))
                    pwrite_all(self._fd.fd, view[:take], position)
                    if part_size:
                        md5.update(view[:take])
                    position += take
                    view = view[take:]
                    if part_size and (position % part_size == 0 or position == end):
                        digests[(position - 1) // part_size] = md5.digest()
                        md5 = hashlib.md5()
                self.batch.advance(len(chunk))
        except BaseException:
            self.batch.advance(-(position - start))
            raise
        if position != end:
            self.batch.advance(-(position - start))
            raise CloudProviderError(
                f"{operation}: the connection ended after {position - start} of {end - start} bytes",
                retryable=True,
                operation=operation,
            )
        return digests, crc, response.headers

    def _finish(self) -> None:
        self.batch.check()  # cancelled while ranges were in flight: the temp file goes, nothing is published
        md5 = self._hasher.result().hex() if self._hasher is not None else None  # it reads through fd
        self._fd.close()
        size = self.temp.stat().st_size
        verify = functools.partial(checksums.verify_download, self.where, self.info.size, size)
        if self.stored_crc is not None:
            ordered_crcs = [self.range_crcs[i] for i in range(self.count)]
            verify(crc=(self.stored_crc, checksums.crc32_join(ordered_crcs, self.range_size, self.info.size)))
        elif not self.trusted or not self.etag:
            verify()
        elif self.part_size:
            concatenated = b"".join(self.part_digests[i] for i in range(len(self.part_digests)))
            verify(
                etag=self.etag, combined=f"{hashlib.md5(concatenated).hexdigest()}-{len(self.part_digests)}"
            )
        else:
            verify(etag=self.etag if md5 else None, md5=md5)
        publish(self.temp, self.destination, mtime=self.info.mtime)
