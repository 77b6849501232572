"""Durable storage for jobs: a local directory (the embedded default) or S3 / S3-compatible.

    from runctl.storage import open_storage

    store = open_storage("s3://my-bucket/runs")            # or a local path; None: [storage] uri
    store.write_json("jobs/j-1/status.json", {"state": "running"})
    store.publish_checkpoint(Path("checkpoints/ckpt-00001200.pt"), "jobs/j-1/checkpoints")
    latest = store.latest_checkpoint("jobs/j-1/checkpoints")

The interface and its contract are in :mod:`runctl.storage.base`; sync (skip unchanged,
``--delete``) in :mod:`runctl.storage.sync`; location parsing and the traversal rules in
:mod:`runctl.storage.uri`. Importing this package costs nothing: boto3 loads on first S3 use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runctl.storage.base import CheckpointRecord, ObjectInfo, ProgressFn, Storage
from runctl.storage.uri import S3Uri, check_location, is_s3_uri, parse_s3_uri, safe_join

if TYPE_CHECKING:
    from runctl.core.config import StorageConfig
    from runctl.storage.transfer import TransferSettings

__all__ = [
    "CheckpointRecord",
    "ObjectInfo",
    "ProgressFn",
    "S3Uri",
    "Storage",
    "is_s3_uri",
    "open_storage",
    "parse_s3_uri",
    "safe_join",
    "transfer_settings",
]


def transfer_settings(config: StorageConfig | None = None) -> TransferSettings:
    """The transfer knobs of ``[storage]`` (defaults when ``config`` is None)."""
    from runctl.storage.transfer import TransferSettings

    if config is None:
        return TransferSettings()
    return TransferSettings(
        multipart_threshold=config.multipart_threshold,
        part_size=config.part_size,
        max_concurrency=config.max_concurrency,
        max_attempts=config.max_attempts,
        s3_checksums=config.s3_checksums,
    )


def open_storage(uri: str | Path | None = None, config: StorageConfig | None = None) -> Storage:
    """The storage at ``uri`` (else ``config.uri``, else ``<state dir>/storage``)."""
    from runctl.core.errors import ConfigError, RunctlError

    target = uri if uri is not None else (config.uri if config is not None else None)
    if target is None:
        from runctl.core.paths import state_dir
        from runctl.storage.local import LocalStorage

        return LocalStorage(state_dir() / "storage")
    if isinstance(target, str):
        try:
            check_location(target)
        except RunctlError as exc:
            if uri is None:
                raise ConfigError(str(exc), key="storage.uri", hint=exc.hint) from None
            raise
    if isinstance(target, str) and is_s3_uri(target):
        from runctl.storage.s3 import S3Storage

        try:
            location = parse_s3_uri(target, arg="storage URI")
        except RunctlError as exc:
            if uri is None:  # it came from the config file: say which key to fix
                raise ConfigError(str(exc), key="storage.uri", hint=exc.hint) from None
            raise
        return S3Storage(
            location,
            settings=transfer_settings(config),
            endpoint_url=config.endpoint_url if config else None,
            region=config.region if config else None,
        )
    from runctl.storage.local import LocalStorage

    return LocalStorage(Path(target))
