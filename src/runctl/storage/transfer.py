"""Parallel, multipart, verified S3 transfers.

How (each choice measured with ``benchmarks/bench_s3.py``; figures in ``docs/readme-parts/s3.md``):

* **Control calls** (create/complete/abort a multipart upload, HEAD, list, delete) go through
  the shared boto3 client and :func:`runctl.clients.aws.call`: retried and classified
  like every other AWS call.
* **Data requests** (PUT of an object or a part, GET of an object or a range) are *signed with
  botocore's SigV4 signer* (:class:`_Signer`: the URL form and signing region learnt once from a
  presigned URL) and *sent with botocore's own HTTP session* (``URLLib3Session``: the same pool,
  TLS and proxy code boto3 uses). This skips botocore's per-call pipeline (events, endpoint
  rules, validation, parsing: ~1 ms of Python each), which is what bounds a Python client on
  many small files. Header signing costs ~0.3 ms less client CPU per request than presigning
  each URL (measured: 1000 × 64 KiB PUTs on s3rver, 0.85 s vs 1.17 s of client CPU, and less
  server work parsing short URLs). Failures are turned into botocore ``ClientError`` and
  classified by the same :func:`~runctl.clients.aws.classify`.
* **Not boto3's TransferManager, not CRT.** s3transfer's manager (classic) was 1.5–2× slower on
  both test servers, mostly per-request overhead and Python-side aws-chunked checksum framing.
  The CRT client is a native dependency, was not faster than this engine on either server, its
  boto3 integration ignores a custom ``endpoint_url`` (a test's traffic could leave loopback),
  and a CRT upload+download round trip against moto did not come back byte-identical. So: no CRT.
* **Sizes.** Objects up to ``multipart_threshold`` (64 MiB) go in one request; larger ones in
  ``part_size`` (8 MiB, as aws-cli) parts, grown so a file never needs more than 10,000 parts
  (files over 5 GB work: the limit is S3's 5 GiB per part, so about 48 TiB). Parts are small
  because moto's server reads a request body in a way that slows down more than linearly with
  its size: a 512 MiB upload there took 7.1–7.5 s in 64 MiB parts, 4.5–5.9 s in 8 MiB parts (no
  difference on s3rver). Downloads of large objects use at most ``max_concurrency`` ranged GETs
  of at least ``min_range`` (64 MiB) each: few, large ranges,
  because moto's server copies the whole object for every ranged GET (64 × 8 MiB ranges of a
  512 MiB object take ~33 s there, one GET ~3 s), while real S3 and s3rver gain from a handful
  of parallel ranges. Without a stored CRC-32 (an object another tool wrote), range boundaries
  follow the object's own part boundaries when it was uploaded in parts, so each part's MD5 can
  be checked in parallel; an object with a plain MD5 ETag (one PUT; or any object on s3rver)
  must be hashed front to back: it is fetched in smaller ranges (``min_range / 4``) in order,
  and a thread hashes each range as soon as every range before it has landed.
* **Checksums, both ways.** Every PUT carries ``Content-MD5`` and ``x-amz-checksum-crc32`` (S3
  rejects a body that does not match either), and the ETag and CRC-32 S3 returns are compared with
  them too (catches servers and proxies that do not check). A multipart upload is declared CRC-32
  (``ChecksumAlgorithm``), as aws-cli does: S3 then checks each part's CRC-32 and the list of them
  at completion (and moto, which otherwise builds a whole-object CRC by copying every part, takes
  ~1.5 s less per 512 MiB). Every object runctl writes also carries its whole CRC-32 in metadata
  (:mod:`runctl.storage.checksums`: why), computed while the body is in memory for one PUT, and
  for a multipart upload in a read-ahead pass that records each part's CRC-32 (the metadata goes
  with the first request; a part whose bytes no longer match when it is sent means the file
  changed under the upload, which then fails instead of storing a mix). Downloads
  check size, then the stored CRC-32 when there is one: each ranged GET's thread checksums its
  own range at ~4 GB/s and the ranges' CRCs are combined. Objects written by other tools are
  checked against their ETag: a plain ETag is the object's MD5; a multipart ETag
  (``md5-of-part-md5s-N``) is checked part by part, the part size read with one
  ``HEAD ?partNumber=1``. Objects whose ETag is not an MD5 (SSE-KMS, SSE-C) are checked by size.
  Ranged GETs carry ``If-Match: <etag>``: an object replaced mid-download fails cleanly instead
  of mixing two versions.
* **Atomic.** A download writes to a hidden temp file (:mod:`runctl.storage.atomic`) that is
  renamed over the destination only once verified; any failure (including Ctrl-C) removes it and
  aborts unfinished multipart uploads, so no half object or orphaned parts (which S3 bills) stay.
* **Retries.** Each request is retried under one :class:`RetryPolicy` (throttling, 5xx,
  connection errors), at most ``max_attempts`` times; the first error that outlasts it cancels
  the whole transfer.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import math
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.clients import aws as session
from runctl.core.errors import CloudProviderError, NotFoundError, RunctlError, ValidationError
from runctl.core.retry import RetryPolicy
from runctl.storage import checksums
from runctl.storage.atomic import prepare_parent, publish, temp_path
from runctl.storage.base import ObjectInfo, ProgressFn

MiB = 1 << 20
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB
MIN_PART_SIZE = 5 * MiB
_READ_CHUNK = MiB
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
_NON_MD5_SSE = ("aws:kms", "aws:kms:dsse")


@dataclass(frozen=True)
class TransferSettings:
    """How transfers are split and how many run at once (``[storage]`` in the config)."""

    multipart_threshold: int = 64 * MiB
    part_size: int = 8 * MiB
    max_concurrency: int = 16
    max_attempts: int = 5
    min_range: int = 64 * MiB  # bytes per ranged GET, at least (not in the config: tests lower it)
    s3_checksums: bool = True  # send S3's x-amz-checksum-crc32 (some S3-compatible stores refuse it)

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE or self.part_size > MAX_PART_SIZE:
            raise ValidationError(
                f"storage part_size must be between 5 MiB and 5 GiB, got {self.part_size} bytes",
                hint='set [storage] part_size, e.g. "8MiB"',
            )
        if min(self.multipart_threshold, self.max_concurrency, self.max_attempts, self.min_range) < 1:
            raise ValidationError(
                "storage multipart_threshold, max_concurrency, max_attempts and min_range must be >= 1"
            )

    def upload_part_size(self, size: int) -> int:
        """``part_size``, grown (to whole MiB) until ``size`` fits in 10,000 parts."""
        part = max(self.part_size, math.ceil(size / MAX_PARTS / MiB) * MiB)
        if part > MAX_PART_SIZE:
            raise ValidationError(
                f"a file of {size} bytes is larger than S3 can store (10,000 parts of 5 GiB)",
                hint="split the file",
            )
        return part

    def range_size(self, size: int, part: int | None, *, ordered: bool = False) -> int:
        """Bytes per ranged GET: few large ranges, a whole number of the object's parts.

        ``ordered`` (the object's MD5 must be computed front to back): smaller ranges, fetched in
        order, so the hash can follow the download instead of running after it.
        """
        target = max(self.min_range, math.ceil(size / self.max_concurrency))
        if part:
            return part * max(1, target // part)
        if ordered:
            return min(target, max(MIN_PART_SIZE, self.min_range // 4))
        return target


class ChecksumMismatchError(ValidationError):
    """What arrived (or what S3 says it stored) is not what was sent. Nothing was kept."""


class _Cancelled(RunctlError):
    """Another task failed (or Ctrl-C): this one stops at its next chunk."""


def _md5_b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _etag(headers: Any) -> str | None:
    value = headers.get("ETag") or headers.get("etag")
    return value.strip('"') if value else None


def check_stored(etag: str | None, sse: str | None, digest: bytes, what: str) -> None:
    """Raise unless the ETag S3 returned for a PUT is the MD5 sent (when it is an MD5 at all)."""
    if (sse or "").lower() in _NON_MD5_SSE or not etag or not _MD5_ETAG.match(etag):
        return
    if etag != digest.hex():
        raise ChecksumMismatchError(
            f"{what}: S3 stored ETag {etag}, expected {digest.hex()}",
            hint="the data changed in transit; run the command again",
        )


def _md5_etag_trusted(headers: Any) -> bool:
    """False when the server says the ETag is not an MD5 (KMS or customer-key encryption)."""
    sse = (headers.get("x-amz-server-side-encryption") or "").lower()
    return sse not in _NON_MD5_SSE and not headers.get("x-amz-server-side-encryption-customer-algorithm")


@dataclass
class _Batch:
    """Shared state of one upload_files/download_files call."""

    progress: ProgressFn | None
    cancel: threading.Event = field(default_factory=threading.Event)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress(n)

    def check(self) -> None:
        if self.cancel.is_set():
            raise _Cancelled("transfer cancelled")


class S3Transfer:
    """Moves files between this machine and one bucket. Thread-safe; reuse it for many calls."""

    def __init__(self, client: Any, bucket: str, settings: TransferSettings | None = None) -> None:
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        self.client = client
        self.bucket = bucket
        self.settings = settings or TransferSettings()
        config = client.meta.config
        endpoint = client.meta.endpoint_url
        self._http = URLLib3Session(
            verify=os.environ.get("AWS_CA_BUNDLE") or True,
            proxies=config.proxies or get_environ_proxies(endpoint),
            timeout=(config.connect_timeout, config.read_timeout),
            max_pool_connections=max(10, self.settings.max_concurrency * 2),
            proxies_config=config.proxies_config,
        )
        self._signer: _Signer | None = None  # built on first use: it needs credentials

    # ---- one request --------------------------------------------------------------------

    def _policy(self, operation: str) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.settings.max_attempts,
            initial_delay=0.25,
            max_delay=8.0,
            deadline=None,
            name=operation,
        )

    def _send(
        self,
        operation: str,
        method: str,
        key: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Any:
        """One signed data request; any failure is raised as a classified RunctlError."""
        try:
            if self._signer is None:
                self._signer = _Signer(self.client, self.bucket)
            request = self._signer.request(method, key, query, headers or {}, body, stream)
            response = self._http.send(request)
        except Exception as exc:
            raise session.classify(exc, operation=operation, resource_id=key) from exc
        if response.status_code >= 300:
            raise _response_error(response, operation, f"s3://{self.bucket}/{key}")
        return response

    # ---- uploads ------------------------------------------------------------------------

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
        results: list[ObjectInfo | None] = [None] * len(pairs)
        batch = _Batch(progress)

        def tasks() -> Iterator[Callable[[], None]]:
            for index, ((path, key), size) in enumerate(zip(pairs, sizes, strict=True)):
                if size <= self.settings.multipart_threshold:
                    yield functools.partial(self._put_small, batch, results, index, path, key, size)
                else:
                    yield from self._multipart_tasks(batch, results, index, path, key, size)

        self._run(batch, tasks())
        return [r for r in results if r is not None]

    def _put_small(
        self, batch: _Batch, results: list[Any], index: int, path: Path, key: str, size: int
    ) -> None:
        batch.check()
        data = path.read_bytes()
        if len(data) != size:
            raise _changed(path)
        digest = hashlib.md5(data).digest()
        crc = zlib.crc32(data)
        headers = {"Content-MD5": _md5_b64(digest), checksums.HEADER: checksums.format_crc32(crc)}
        if self.settings.s3_checksums:
            headers[checksums.S3_HEADER] = checksums.s3_form(crc)

        def attempt() -> Any:
            batch.check()
            return self._send("PutObject", "PUT", key, body=data, headers=headers)

        response = self._policy(f"upload s3://{self.bucket}/{key}").call(attempt)
        _check_stored_crc(response.headers, crc, f"s3://{self.bucket}/{key}")
        etag = _etag(response.headers)
        check_stored(
            etag, response.headers.get("x-amz-server-side-encryption"), digest, f"s3://{self.bucket}/{key}"
        )
        results[index] = ObjectInfo(key=key, size=size, mtime=time.time(), etag=etag)
        batch.advance(size)

    def _multipart_tasks(
        self, batch: _Batch, results: list[Any], index: int, path: Path, key: str, size: int
    ) -> Iterator[Callable[[], None]]:
        part_size = self.settings.upload_part_size(size)
        count = math.ceil(size / part_size)
        fd = _Fd(os.open(path, os.O_RDONLY))
        try:
            part_crcs = _part_crc32s(fd.fd, size, part_size, path)  # the metadata goes first
            crc = checksums.crc32_join(part_crcs, part_size, size)
            declared: dict[str, Any] = {"ChecksumAlgorithm": "CRC32"} if self.settings.s3_checksums else {}
            created = session.call(
                self.client.create_multipart_upload,
                operation=f"start multipart upload of s3://{self.bucket}/{key}",
                Bucket=self.bucket,
                Key=key,
                Metadata={checksums.METADATA_KEY: checksums.format_crc32(crc)},
                **declared,  # S3 then checks each part's CRC-32 as it arrives
            )
        except BaseException:
            fd.close()
            raise
        upload_id = created["UploadId"]
        parts: list[dict[str, Any] | None] = [None] * count
        digests: list[bytes] = [b""] * count
        state = {"remaining": count, "finished": False}

        def cleanup() -> None:
            fd.close()
            if not state["finished"]:
                self._abort(key, upload_id)

        with batch.lock:
            batch.cleanups.append(cleanup)

        def part(number: int) -> None:
            batch.check()
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            data = os.pread(fd.fd, length, offset)
            if len(data) != length or zlib.crc32(data) != part_crcs[number - 1]:
                raise _changed(path)
            digest = hashlib.md5(data).digest()
            headers = {"Content-MD5": _md5_b64(digest)}
            entry: dict[str, Any] = {"PartNumber": number}
            if self.settings.s3_checksums:
                crc = checksums.s3_form(part_crcs[number - 1])
                headers[checksums.S3_HEADER] = entry["ChecksumCRC32"] = crc

            def attempt() -> Any:
                batch.check()
                return self._send(
                    "UploadPart",
                    "PUT",
                    key,
                    query={"partNumber": str(number), "uploadId": upload_id},
                    body=data,
                    headers=headers,
                )

            response = self._policy(f"upload part {number}/{count} of s3://{self.bucket}/{key}").call(attempt)
            where = f"part {number} of s3://{self.bucket}/{key}"
            _check_stored_crc(response.headers, part_crcs[number - 1], where)
            check_stored(
                _etag(response.headers),
                response.headers.get("x-amz-server-side-encryption"),
                digest,
                where,
            )
            parts[number - 1] = {**entry, "ETag": response.headers.get("ETag")}
            digests[number - 1] = digest
            batch.advance(length)
            with batch.lock:
                state["remaining"] -= 1
                last = state["remaining"] == 0
            if last:
                self._complete(path, key, upload_id, parts, digests, size, results, index, state)

        for number in range(1, count + 1):
            yield functools.partial(part, number)

    def _complete(
        self,
        path: Path,
        key: str,
        upload_id: str,
        parts: list[Any],
        digests: list[bytes],
        size: int,
        results: list[Any],
        index: int,
        state: dict[str, Any],
    ) -> None:
        if os.stat(path).st_size != size:
            raise _changed(path)
        done = session.call(
            self.client.complete_multipart_upload,
            operation=f"complete multipart upload of s3://{self.bucket}/{key}",
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        state["finished"] = True
        etag = (done.get("ETag") or "").strip('"')
        expected = f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"
        if _MULTIPART_ETAG.match(etag) and etag != expected:
            raise ChecksumMismatchError(
                f"s3://{self.bucket}/{key}: S3 assembled ETag {etag}, expected {expected}",
                hint="parts were lost or reordered; run the command again",
            )
        results[index] = ObjectInfo(key=key, size=size, mtime=time.time(), etag=etag or None)

    def _abort(self, key: str, upload_id: str) -> None:
        # best effort: a bucket lifecycle rule (or `aws s3api list-multipart-uploads`) finds leftovers
        with contextlib.suppress(RunctlError):
            session.call(
                self.client.abort_multipart_upload,
                operation=f"abort multipart upload of s3://{self.bucket}/{key}",
                policy=RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=2.0, deadline=30.0),
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )

    # ---- downloads ----------------------------------------------------------------------

    def download(
        self, pairs: Sequence[tuple[ObjectInfo, Path]], *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """Download ``(object, path)`` pairs in parallel: verified, atomic, mtime kept."""
        for _info, destination in pairs:
            prepare_parent(destination)
        batch = _Batch(progress)

        def tasks() -> Iterator[Callable[[], None]]:
            for info, destination in pairs:
                in_parts = bool(_MULTIPART_ETAG.match(info.etag or ""))
                if info.size == 0 or (info.size <= self.settings.multipart_threshold and not in_parts):
                    yield functools.partial(self._get_small, batch, info, destination)
                else:
                    yield from self._ranged_tasks(batch, info, destination)

        self._run(batch, tasks())
        return [destination for _info, destination in pairs]

    def _get_small(self, batch: _Batch, info: ObjectInfo, destination: Path) -> None:
        batch.check()
        temp = temp_path(destination)
        with batch.lock:
            batch.cleanups.append(lambda: temp.unlink(missing_ok=True))

        def attempt() -> tuple[int, Any, str]:
            batch.check()
            response = self._send("GetObject", "GET", info.key, stream=True)
            stored_crc = checksums.parse_crc32(response.headers.get(checksums.HEADER))
            hasher: Any = checksums.Crc32() if stored_crc is not None else hashlib.md5()
            written = 0
            try:
                with temp.open("wb") as handle:
                    for chunk in _stream(response, operation=f"download s3://{self.bucket}/{info.key}"):
                        batch.check()
                        handle.write(chunk)
                        hasher.update(chunk)
                        written += len(chunk)
                        batch.advance(len(chunk))
            except BaseException:
                batch.advance(-written)
                raise
            return written, response.headers, hasher.hexdigest()

        written, headers, actual = self._policy(f"download s3://{self.bucket}/{info.key}").call(attempt)
        stored_crc = checksums.parse_crc32(headers.get(checksums.HEADER))
        if stored_crc is not None:
            self._verify(info, written, crc=(stored_crc, int(actual, 16)))
        else:
            etag = info.etag or _etag(headers)
            self._verify(info, written, etag=etag if _md5_etag_trusted(headers) else None, md5=actual)
        publish(temp, destination, mtime=info.mtime)

    def _ranged_tasks(
        self, batch: _Batch, info: ObjectInfo, destination: Path
    ) -> Iterator[Callable[[], None]]:
        """Ranged GETs written in place; checked by CRC-32, else part MD5s, else the whole MD5.

        A HEAD first reads the object's metadata (the stored CRC-32); without one, a multipart
        ETag costs a second HEAD (``?partNumber=1``, whose answer some stores strip of metadata)
        for the part size, which decides how the ranges are cut.
        """
        head = self._head(info.key)
        etag = info.etag or (head.get("ETag") or "").strip('"') or None  # ranges must match its version
        multipart = _MULTIPART_ETAG.match(etag or "")
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}  # MinIO: Runctl-Crc32
        stored_crc = checksums.parse_crc32(metadata.get(checksums.METADATA_KEY))
        part_size: int | None = None
        if multipart and stored_crc is None:
            part_size = int(self._head(info.key, part_number=1)["ContentLength"])
            if part_size <= 0 or math.ceil(info.size / part_size) != int(multipart.group(2)):
                part_size = None  # uneven parts: checked by size only
        ordered = stored_crc is None and part_size is None and bool(_MD5_ETAG.match(etag or ""))
        range_size = self.settings.range_size(info.size, part_size, ordered=ordered)
        count = math.ceil(info.size / range_size)
        temp = temp_path(destination)
        fd = _Fd(os.open(temp, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644))
        part_digests: dict[int, bytes] = {}
        range_crcs: dict[int, int] = {}
        state = {"remaining": count, "trusted": True}
        hasher: _OrderedMD5 | None = None

        def cleanup() -> None:
            if hasher is not None:
                hasher.stop()
            fd.close()
            temp.unlink(missing_ok=True)

        with batch.lock:  # registered before anything else can fail: no fd or temp file is left
            batch.cleanups.append(cleanup)
        os.ftruncate(fd.fd, info.size)
        if ordered:
            hasher = _OrderedMD5(fd.fd, info.size, range_size)

        def fetch(index: int) -> None:
            batch.check()
            start = index * range_size
            end = min(start + range_size, info.size)
            headers = {"Range": f"bytes={start}-{end - 1}"}
            if etag:
                headers["If-Match"] = f'"{etag}"'
            operation = f"download s3://{self.bucket}/{info.key} bytes {start}-{end - 1}"

            def attempt() -> tuple[dict[int, bytes], int, Any]:
                batch.check()
                response = self._send("GetObject", "GET", info.key, headers=headers, stream=True)
                digests: dict[int, bytes] = {}
                position, md5, crc = start, hashlib.md5(), 0
                try:
                    for chunk in _stream(response, operation=operation):
                        batch.check()
                        if stored_crc is not None:
                            crc = zlib.crc32(chunk, crc)
                        view = memoryview(chunk)
                        while view:
                            take = len(view)
                            if part_size:
                                take = min(take, part_size - (position % part_size))
                            _pwrite_all(fd.fd, view[:take], position)
                            if part_size:
                                md5.update(view[:take])
                            position += take
                            view = view[take:]
                            if part_size and (position % part_size == 0 or position == end):
                                digests[(position - 1) // part_size] = md5.digest()
                                md5 = hashlib.md5()
                        batch.advance(len(chunk))
                except BaseException:
                    batch.advance(-(position - start))
                    raise
                if position != end:
                    batch.advance(-(position - start))
                    raise CloudProviderError(
                        f"{operation}: the connection ended after {position - start} of {end - start} bytes",
                        retryable=True,
                        operation=operation,
                    )
                return digests, crc, response.headers

            digests, crc, response_headers = self._policy(operation).call(attempt)
            if hasher is not None:
                hasher.ready(index)
            with batch.lock:
                part_digests.update(digests)
                range_crcs[index] = crc
                state["trusted"] = state["trusted"] and _md5_etag_trusted(response_headers)
                state["remaining"] -= 1
                last = state["remaining"] == 0
            if last:
                md5 = hasher.result().hex() if hasher is not None else None  # it reads through fd
                fd.close()
                size = temp.stat().st_size
                if stored_crc is not None:
                    ordered_crcs = [range_crcs[i] for i in range(count)]
                    joined = checksums.crc32_join(ordered_crcs, range_size, info.size)
                    self._verify(info, size, crc=(stored_crc, joined))
                elif not state["trusted"] or not etag:
                    self._verify(info, size)
                elif part_size:
                    concatenated = b"".join(part_digests[i] for i in range(len(part_digests)))
                    combined = f"{hashlib.md5(concatenated).hexdigest()}-{len(part_digests)}"
                    self._verify(info, size, etag=etag, combined=combined)
                else:
                    self._verify(info, size, etag=etag if md5 else None, md5=md5)
                publish(temp, destination, mtime=info.mtime)

        for index in range(count):
            yield functools.partial(fetch, index)

    def _head(self, key: str, *, part_number: int | None = None) -> dict[str, Any]:
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

    def _verify(
        self,
        info: ObjectInfo,
        size: int,
        *,
        crc: tuple[int, int] | None = None,
        etag: str | None = None,
        md5: str | None = None,
        combined: str | None = None,
    ) -> None:
        """Raise unless ``size`` is the object's and the checksum given (stored, actual) agrees."""
        where = f"s3://{self.bucket}/{info.key}"
        if size != info.size:
            raise ChecksumMismatchError(
                f"download of {where}: got {size} bytes, expected {info.size}",
                hint="the object changed or the connection was cut; run the command again",
            )
        mismatch = None
        if crc is not None and crc[0] != crc[1]:
            stored, actual = (checksums.format_crc32(v) for v in crc)
            mismatch = f"CRC-32 {actual}, its metadata says {stored}"
        elif etag is not None and combined is not None and combined != etag:
            mismatch = f"parts hash to {combined}, S3 says {etag}"
        elif etag is not None and md5 is not None and _MD5_ETAG.match(etag) and md5 != etag:
            mismatch = f"MD5 {md5}, S3 says {etag}"
        if mismatch:
            raise ChecksumMismatchError(
                f"download of {where}: {mismatch}",
                hint="the data was corrupted in transit; run the command again",
            )

    # ---- running many tasks -------------------------------------------------------------

    def _run(self, batch: _Batch, tasks: Iterator[Callable[[], None]]) -> None:
        """Run ``tasks`` with at most ``max_concurrency`` at once; the first failure cancels all.

        Tasks are pulled lazily (a multipart upload is started only when its parts are next),
        and on any failure, Ctrl-C included, every cleanup (abort upload, delete temp) runs.
        """
        limit = self.settings.max_concurrency
        pending: set[Future[None]] = set()
        executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="runctl-s3")
        try:
            for task in tasks:
                while len(pending) >= limit * 2:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _raise_first(done)
                pending.add(executor.submit(task))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                _raise_first(done)
        except BaseException:
            batch.cancel.set()
            for future in pending:
                future.cancel()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            for cleanup in batch.cleanups:  # idempotent: after success they only close handles
                cleanup()


def _raise_first(done: set[Future[None]]) -> None:
    for future in done:
        exc = future.exception()
        if exc is not None and not isinstance(exc, _Cancelled):
            raise exc


class _OrderedMD5:
    """The MD5 of a file whose ranges are written out of order, computed front to back.

    Range workers call :meth:`ready` as each range lands; a thread hashes every range as soon as
    all before it are there (reading back from the page cache), so hashing overlaps the download.
    """

    def __init__(self, fd: int, size: int, range_size: int) -> None:
        self._fd, self._size, self._range = fd, size, range_size
        self._md5 = hashlib.md5()
        self._ready: set[int] = set()
        self._stopped = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="runctl-s3-md5", daemon=True)
        self._thread.start()

    def ready(self, index: int) -> None:
        with self._cond:
            self._ready.add(index)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()

    def result(self) -> bytes:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._md5.digest()

    def _run(self) -> None:
        try:
            for index in range(math.ceil(self._size / self._range)):
                with self._cond:
                    while index not in self._ready and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                position = index * self._range
                end = min(position + self._range, self._size)
                while position < end:
                    chunk = os.pread(self._fd, min(8 * MiB, end - position), position)
                    if not chunk:
                        raise OSError(f"short read at {position}")
                    self._md5.update(chunk)
                    position += len(chunk)
        except BaseException as exc:
            self._error = exc


class _Signer:
    """Signs data requests for one bucket with SigV4 headers, skipping botocore's per-call pipeline.

    The URL form (endpoint, path or virtual-host style) and the signing region are botocore's:
    read once from a presigned URL for a probe key. Bodies are not SHA-256 hashed for the
    signature (``UNSIGNED-PAYLOAD``, as botocore does for S3 over HTTPS): every PUT carries
    ``Content-MD5``, which S3 checks.
    """

    _PROBE = "runctl-probe"

    def __init__(self, client: Any, bucket: str) -> None:
        from urllib.parse import parse_qs

        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": self._PROBE}, ExpiresIn=60
        )
        base, _, query = url.partition("?")
        if not base.endswith("/" + self._PROBE):
            raise CloudProviderError(f"cannot address objects in s3://{bucket} (unexpected URL form {base})")
        self._base = base[: -len(self._PROBE)]
        scope = parse_qs(query).get("X-Amz-Credential", [""])[0].split("/")
        self._region = scope[2] if len(scope) == 5 else client.meta.region_name
        # botocore has no public accessor for a client's credentials (None: unsigned requests)
        self._credentials = client._request_signer._credentials
        self._auth = _unsigned_payload_auth()

    def request(
        self,
        method: str,
        key: str,
        query: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | memoryview | None,
        stream: bool,
    ) -> Any:
        from urllib.parse import quote, urlencode

        from botocore.awsrequest import AWSRequest
        from botocore.utils import percent_encode

        url = self._base + percent_encode(key, safe="/~")
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="-_.~")
        request = AWSRequest(method, url, headers=headers, data=body, stream_output=stream)
        if self._credentials is not None:
            self._auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        return request.prepare()


@functools.cache
def _unsigned_payload_auth() -> type:
    from botocore.auth import S3SigV4Auth

    class UnsignedPayloadAuth(S3SigV4Auth):
        def _should_sha256_sign_payload(self, request: Any) -> bool:
            return False

    return UnsignedPayloadAuth


class _Fd:
    """A file descriptor closed exactly once (a second ``os.close`` could hit a reused number)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)


def _part_crc32s(fd: int, size: int, part_size: int, path: Path) -> list[int]:
    """The CRC-32 of each ``part_size`` piece of ``fd``, in one pass through one reused buffer."""
    buffer = memoryview(bytearray(min(8 * MiB, part_size)))
    crcs: list[int] = []
    position = 0
    while position < size:
        end, crc = min(position + part_size, size), 0
        while position < end:
            got = os.preadv(fd, [buffer[: min(len(buffer), end - position)]], position)
            if got <= 0:
                raise _changed(path)
            crc = zlib.crc32(buffer[:got], crc)
            position += got
        crcs.append(crc)
    return crcs


def _pwrite_all(fd: int, data: memoryview, position: int) -> None:
    """Write all of ``data`` at ``position`` (``pwrite`` may write less, e.g. on network file systems)."""
    while data:
        written = os.pwrite(fd, data, position)
        if written <= 0:
            raise OSError(f"could not write at offset {position}")
        data, position = data[written:], position + written


def _check_stored_crc(headers: Any, crc: int, what: str) -> None:
    """Raise if S3 answered with a CRC-32 of what it stored that is not the one sent."""
    stored = headers.get(checksums.S3_HEADER)
    if stored and stored != checksums.s3_form(crc):
        raise ChecksumMismatchError(
            f"{what}: S3 stored CRC-32 {stored}, expected {checksums.s3_form(crc)}",
            hint="the data changed in transit; run the command again",
        )


def _changed(path: Path) -> ValidationError:
    return ValidationError(
        f"{path} changed while it was being uploaded",
        hint="upload it once it is completely written (publish a checkpoint after it is renamed into place)",
    )


def _stream(response: Any, *, operation: str) -> Iterator[bytes]:
    """The body of a streamed response, with connection failures made retryable errors."""
    import urllib3

    complete = False
    try:
        yield from response.raw.stream(_READ_CHUNK, decode_content=False)
        complete = True
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise CloudProviderError(
            f"{operation}: the connection failed mid-transfer: {exc}", retryable=True, operation=operation
        ) from exc
    finally:
        if not complete:
            response.raw.close()  # a half-read connection must not go back to the pool
        response.raw.release_conn()


_STATUS_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    412: "PreconditionFailed",
    503: "SlowDown",
}


def _response_error(response: Any, operation: str, resource: str) -> RunctlError:
    """A non-2xx answer to a data request, as the RunctlError :func:`session.classify` picks."""
    from xml.etree import ElementTree

    from botocore.exceptions import ClientError

    body = response.content or b""
    code = message = ""
    try:
        root = ElementTree.fromstring(body) if body.strip() else None
    except ElementTree.ParseError:
        root = None
    if root is not None:
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or ""
    status = response.status_code
    code = code or _STATUS_CODES.get(status, str(status))
    if code == "PreconditionFailed":
        return ValidationError(
            f"{operation} {resource}: the object was replaced while it was being downloaded",
            hint="run the command again to fetch the new version",
            operation=operation,
            resource_id=resource,
        )
    error = ClientError(
        {"Error": {"Code": code, "Message": message or code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )
    return session.classify(error, operation=operation, resource_id=resource)
