"""The CRC-32 runctl stores with every object it uploads, and how ranges of it are combined.

Why a checksum of our own, in user metadata (``x-amz-meta-runctl-crc32``), besides the ETag:

* **Speed.** The ETag is an MD5 (or an MD5 of part MD5s). MD5 runs at ~0.7 GB/s on one core
  and cannot be split: verifying a 512 MiB download costs ~0.75 s of CPU, about as long as the
  whole transfer takes on loopback. zlib's CRC-32 runs at ~4 GB/s, and the CRC-32s of ranges
  fetched in parallel combine into the whole object's (:func:`crc32_combine`), so each range is
  checked by the thread that fetched it.
* **Every store keeps it.** S3's own additional checksums (``x-amz-checksum-*``) are not kept by
  every S3-compatible store, and some (s3rver) give a multipart object a plain MD5 ETag that can
  only be checked front to back. User metadata is kept by all of them, and it is sent with the
  object's first request, so it always describes the version it is stored with (a ranged
  download reads it with a HEAD, and every range then asks for that version with ``If-Match``).

Objects that runctl did not write (no metadata) are still checked against their ETag (a plain
ETag is the object's MD5; a multipart one, ``md5-of-part-md5s-N``, is checked part by part;
objects encrypted with KMS or a customer key have no MD5 ETag and are checked by size). Every
check, both ways, lives here: what a PUT's answer says was stored (:func:`check_stored`,
:func:`check_stored_crc`) and whether a download is what was stored (:func:`verify_download`).
CRC-32
catches transmission and storage corruption (every burst of up to 32 bits, anything else with
probability 1 - 2^-32); like the MD5 ETag, it is not a defence against a deliberate forger.
"""

from __future__ import annotations

import base64
import functools
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from runctl.core.errors import ValidationError

METADATA_KEY = "runctl-crc32"
HEADER = "x-amz-meta-" + METADATA_KEY
S3_HEADER = "x-amz-checksum-crc32"  # S3's own per-request CRC-32, which S3 verifies on arrival
MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
_NON_MD5_SSE = ("aws:kms", "aws:kms:dsse")
_POLY = 0xEDB88320  # zlib's CRC-32 polynomial, reflected
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class ChecksumMismatchError(ValidationError):
    """What arrived (or what S3 says it stored) is not what was sent. Nothing was kept."""


class Crc32:
    """A running CRC-32 with the ``update``/``hexdigest`` shape of a hashlib object."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return format_crc32(self.value)


def format_crc32(value: int) -> str:
    """The metadata form: eight lower-case hex digits."""
    return f"{value:08x}"


def parse_crc32(text: str | None) -> int | None:
    """The CRC-32 stored in metadata, or None when absent or not exactly eight hex digits."""
    if not text or not _HEX8.fullmatch(text):
        return None
    return int(text, 16)


def s3_form(value: int) -> str:
    """How S3 writes a CRC-32 (``x-amz-checksum-crc32``, ``ChecksumCRC32``): base64 of 4 bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def crc32_join(crcs: Sequence[int], chunk: int, size: int) -> int:
    """The CRC-32 of ``size`` bytes from those of its consecutive ``chunk``-byte pieces."""
    total = crcs[0]
    for index in range(1, len(crcs)):
        total = crc32_combine(total, crcs[index], min(chunk, size - index * chunk))
    return total


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's method).

    Appending ``length2`` bytes acts on ``crc1`` as a fixed linear map over GF(2); the map's
    32×32 matrix is built once per length (:func:`_shift_matrix`, cached: a download's ranges
    share one length), so each combine is one matrix-vector product.
    """
    if length2 <= 0:
        return crc1
    return _times(_shift_matrix(length2), crc1) ^ crc2


def _times(matrix: tuple[int, ...], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _product(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The map "apply b, then a"."""
    return tuple(_times(a, column) for column in b)


@functools.lru_cache(maxsize=64)
def _shift_matrix(length: int) -> tuple[int, ...]:
    """The linear map that appending ``length`` zero bytes applies to a CRC-32 register."""
    one_bit = (_POLY, *(1 << n for n in range(31)))  # one zero bit
    step = one_bit
    for _ in range(3):  # one zero byte = eight zero bits
        step = _product(step, step)
    result: tuple[int, ...] | None = None
    while length:
        if length & 1:
            result = step if result is None else _product(step, result)
        length >>= 1
        if length:
            step = _product(step, step)
    assert result is not None
    return result


# ---- what S3 answers ---------------------------------------------------------------------


def md5_b64(digest: bytes) -> str:
    """The ``Content-MD5`` form of an MD5 digest."""
    return base64.b64encode(digest).decode()


def etag_of(headers: Mapping[str, Any]) -> str | None:
    """The ETag of an answer, without its quotes."""
    value = headers.get("ETag") or headers.get("etag")
    return value.strip('"') if value else None


def md5_etag_trusted(headers: Mapping[str, Any]) -> bool:
    """False when the server says the ETag is not an MD5 (KMS or customer-key encryption)."""
    sse = (headers.get("x-amz-server-side-encryption") or "").lower()
    return sse not in _NON_MD5_SSE and not headers.get("x-amz-server-side-encryption-customer-algorithm")


def check_stored(etag: str | None, sse: str | None, digest: bytes, what: str) -> None:
    """Raise unless the ETag S3 returned for a PUT is the MD5 sent (when it is an MD5 at all)."""
    if (sse or "").lower() in _NON_MD5_SSE or not etag or not MD5_ETAG.match(etag):
        return
    if etag != digest.hex():
        raise ChecksumMismatchError(
            f"{what}: S3 stored ETag {etag}, expected {digest.hex()}",
            hint="the data changed in transit; run the command again",
        )


def check_stored_crc(headers: Mapping[str, Any], crc: int, what: str) -> None:
    """Raise if S3 answered with a CRC-32 of what it stored that is not the one sent."""
    stored = headers.get(S3_HEADER)
    if stored and stored != s3_form(crc):
        raise ChecksumMismatchError(
            f"{what}: S3 stored CRC-32 {stored}, expected {s3_form(crc)}",
            hint="the data changed in transit; run the command again",
        )


def verify_download(
    where: str,
    expected_size: int,
    size: int,
    *,
    crc: tuple[int, int] | None = None,
    etag: str | None = None,
    md5: str | None = None,
    combined: str | None = None,
) -> None:
    """Raise unless ``size`` is the object's and the checksum given agrees.

    ``crc``: (stored in metadata, computed); ``etag`` with ``md5`` (a plain ETag) or with
    ``combined`` (the MD5 of the part MD5s, for a multipart ETag).
    """
    if size != expected_size:
        raise ChecksumMismatchError(
            f"download of {where}: got {size} bytes, expected {expected_size}",
            hint="the object changed or the connection was cut; run the command again",
        )
    mismatch = None
    if crc is not None and crc[0] != crc[1]:
        stored, actual = (format_crc32(v) for v in crc)
        mismatch = f"CRC-32 {actual}, its metadata says {stored}"
    elif etag is not None and combined is not None and combined != etag:
        mismatch = f"parts hash to {combined}, S3 says {etag}"
    elif etag is not None and md5 is not None and MD5_ETAG.match(etag) and md5 != etag:
        mismatch = f"MD5 {md5}, S3 says {etag}"
    if mismatch:
        raise ChecksumMismatchError(
            f"download of {where}: {mismatch}",
            hint="the data was corrupted in transit; run the command again",
        )
