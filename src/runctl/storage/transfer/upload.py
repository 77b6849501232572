"""Uploads: one PUT for a file up to ``multipart_threshold``, a multipart upload above it.

Every PUT carries ``Content-MD5`` and, unless ``[storage] s3_checksums = false``,
``x-amz-checksum-crc32`` (S3 rejects a body that matches neither), and the ETag and CRC-32 S3
answers are compared with them too (catches servers and proxies that do not check). Every object
also carries runctl's CRC-32 in metadata (:mod:`runctl.storage.checksums`: why), computed while
the body is in memory for one PUT, and for a multipart upload in a read-ahead pass that records
each part's CRC-32: the metadata goes with the request that creates the upload, and a part whose
bytes no longer match when it is sent means the file changed under the upload, which then fails
instead of storing a mix. A multipart upload is declared CRC-32 (``ChecksumAlgorithm``), as
aws-cli does: S3 then checks each part and the list of them at completion. An upload that fails
or is interrupted is aborted (a registered cleanup), so no parts, which S3 bills, are left.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.clients import aws as session
from runctl.storage import checksums
from runctl.storage.base import ObjectInfo
from runctl.storage.checksums import ChecksumMismatchError
from runctl.storage.transfer.files import Fd, changed, part_crc32s
from runctl.storage.transfer.scheduling import Batch

if TYPE_CHECKING:
    from runctl.storage.transfer.engine import S3Transfer


def put_small(transfer: S3Transfer, batch: Batch, path: Path, key: str, size: int) -> ObjectInfo:
    """One PUT of a whole file, checked both ways."""
    batch.check()
    data = path.read_bytes()
    if len(data) != size:
        raise changed(path)
    digest = hashlib.md5(data).digest()
    crc = zlib.crc32(data)
    headers = {"Content-MD5": checksums.md5_b64(digest), checksums.HEADER: checksums.format_crc32(crc)}
    if transfer.settings.s3_checksums:
        headers[checksums.S3_HEADER] = checksums.s3_form(crc)
    where = f"s3://{transfer.bucket}/{key}"

    def attempt() -> Any:
        batch.check()
        return transfer.wire.send("PutObject", "PUT", key, body=data, headers=headers)

    response = transfer.policy(f"upload {where}").call(attempt)
    checksums.check_stored_crc(response.headers, crc, where)
    etag = checksums.etag_of(response.headers)
    checksums.check_stored(etag, response.headers.get("x-amz-server-side-encryption"), digest, where)
    batch.advance(size)
    return ObjectInfo(key=key, size=size, mtime=time.time(), etag=etag)


class MultipartUpload:
    """One large file sent in parts; the task that sends the last part completes the upload.

    Created when its parts are next in line (the upload is started then); ``result`` is what S3
    stored once :meth:`tasks` have all run.
    """

    def __init__(self, transfer: S3Transfer, batch: Batch, path: Path, key: str, size: int) -> None:
        self.transfer, self.batch, self.path, self.key, self.size = transfer, batch, path, key, size
        self.where = f"s3://{transfer.bucket}/{key}"
        self.part_size = transfer.settings.upload_part_size(size)
        self.count = math.ceil(size / self.part_size)
        self.parts: list[dict[str, Any] | None] = [None] * self.count
        self.digests: list[bytes] = [b""] * self.count
        self.remaining = self.count
        self.finished = False
        self.result: ObjectInfo | None = None
        self._lock = threading.Lock()
        self._fd = Fd(os.open(path, os.O_RDONLY))
        try:
            self.part_crcs = part_crc32s(self._fd.fd, size, self.part_size, path)  # metadata goes first
            crc = checksums.crc32_join(self.part_crcs, self.part_size, size)
            declared: dict[str, Any] = (
                {"ChecksumAlgorithm": "CRC32"} if transfer.settings.s3_checksums else {}
            )
            created = session.call(
                transfer.client.create_multipart_upload,
                operation=f"start multipart upload of {self.where}",
                Bucket=transfer.bucket,
                Key=key,
                Metadata={checksums.METADATA_KEY: checksums.format_crc32(crc)},
                **declared,  # S3 then checks each part's CRC-32 as it arrives
            )
        except BaseException:
            self._fd.close()
            raise
        self.upload_id: str = created["UploadId"]
        batch.on_exit(self._cleanup)

    def tasks(self) -> Iterator[Callable[[], None]]:
        for number in range(1, self.count + 1):
            yield functools.partial(self._send_part, number)

    def _cleanup(self) -> None:
        self._fd.close()
        if not self.finished:
            self.transfer.abort(self.key, self.upload_id)

    def _send_part(self, number: int) -> None:
        self.batch.check()
        offset = (number - 1) * self.part_size
        length = min(self.part_size, self.size - offset)
        data = os.pread(self._fd.fd, length, offset)
        if len(data) != length or zlib.crc32(data) != self.part_crcs[number - 1]:
            raise changed(self.path)
        digest = hashlib.md5(data).digest()
        headers = {"Content-MD5": checksums.md5_b64(digest)}
        entry: dict[str, Any] = {"PartNumber": number}
        if self.transfer.settings.s3_checksums:
            crc = checksums.s3_form(self.part_crcs[number - 1])
            headers[checksums.S3_HEADER] = entry["ChecksumCRC32"] = crc
        query = {"partNumber": str(number), "uploadId": self.upload_id}

        def attempt() -> Any:
            self.batch.check()
            return self.transfer.wire.send(
                "UploadPart", "PUT", self.key, query=query, body=data, headers=headers
            )

        response = self.transfer.policy(f"upload part {number}/{self.count} of {self.where}").call(attempt)
        where = f"part {number} of {self.where}"
        checksums.check_stored_crc(response.headers, self.part_crcs[number - 1], where)
        sse = response.headers.get("x-amz-server-side-encryption")
        checksums.check_stored(checksums.etag_of(response.headers), sse, digest, where)
        self.parts[number - 1] = {**entry, "ETag": response.headers.get("ETag")}
        self.digests[number - 1] = digest
        self.batch.advance(length)
        with self._lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self._complete()

    def _complete(self) -> None:
        self.batch.check()  # cancelled (Ctrl-C, another file failed) while parts were in flight: abort
        if os.stat(self.path).st_size != self.size:
            raise changed(self.path)
        done = session.call(
            self.transfer.client.complete_multipart_upload,
            operation=f"complete multipart upload of {self.where}",
            Bucket=self.transfer.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.finished = True
        etag = (done.get("ETag") or "").strip('"')
        expected = f"{hashlib.md5(b''.join(self.digests)).hexdigest()}-{len(self.digests)}"
        if checksums.MULTIPART_ETAG.match(etag) and etag != expected:
            raise ChecksumMismatchError(
                f"{self.where}: S3 assembled ETag {etag}, expected {expected}",
                hint="parts were lost or reordered; run the command again",
            )
        self.result = ObjectInfo(key=self.key, size=self.size, mtime=time.time(), etag=etag or None)
