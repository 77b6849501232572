"""Parallel, multipart, verified S3 transfers.

* :mod:`.engine` — :class:`S3Transfer`: what an upload or a download of many files does;
* :mod:`.upload`, :mod:`.download` — one small object, a multipart upload, a ranged download;
* :mod:`.wire` — one signed data request over botocore's HTTP session;
* :mod:`.scheduling` — the bounded, cancellable task pool and its cleanups;
* :mod:`.files` — the local side (positional writes, read-ahead CRCs, ordered MD5);
* :mod:`.settings` — the ``[storage]`` transfer keys;
* checksums, both ways, are :mod:`runctl.storage.checksums`.

Why this engine (and not obstore, boto3's TransferManager, CRT or s5cmd), measured, is in
docs/benchmarks.md ("S3 transfers").
"""

from runctl.storage.checksums import ChecksumMismatchError, check_stored
from runctl.storage.transfer.engine import S3Transfer
from runctl.storage.transfer.settings import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB, TransferSettings

__all__ = [
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "ChecksumMismatchError",
    "MiB",
    "S3Transfer",
    "TransferSettings",
    "check_stored",
]
