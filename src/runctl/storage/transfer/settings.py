"""How transfers are split and how many run at once: the ``[storage]`` transfer keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runctl.core.errors import ValidationError

MiB = 1 << 20
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB
MIN_PART_SIZE = 5 * MiB


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
