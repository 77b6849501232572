"""Storage locations: ``s3://bucket/key`` URIs, local paths, and the rules that keep keys safe.

* S3 URIs and S3's naming rules (:func:`parse_s3_uri`, :func:`validate_bucket`, ...) live in
  :mod:`runctl.core.s3uri` (configuration checks them on load, below this layer) and are
  re-exported here, the storage layer's one place for locations.
* :func:`safe_join` maps a key (relative to a prefix) onto a local directory and refuses any key
  that would land outside it: a ``..`` component, an absolute path, a NUL byte, an empty
  component, or a path that resolves (through a symlink already in the destination) to somewhere
  outside. Every download goes through it before the first byte is written.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from runctl.core.errors import ValidationError
from runctl.core.s3uri import (
    MAX_KEY_BYTES,
    S3_SCHEME,
    S3Uri,
    check_location,
    is_s3_uri,
    parse_s3_uri,
    validate_bucket,
    validate_key,
)

__all__ = [
    "MAX_KEY_BYTES",
    "S3_SCHEME",
    "S3Uri",
    "check_location",
    "check_relative_key",
    "is_s3_uri",
    "parse_s3_uri",
    "safe_join",
    "validate_bucket",
    "validate_key",
]


def check_relative_key(relative: str, *, what: str = "key") -> PurePosixPath:
    """The key as a relative path with only normal components; raise for anything that escapes."""
    if "\x00" in relative:
        raise ValidationError(f"{what} {relative!r} contains a NUL character", hint="rename the object")
    if relative.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", relative):
        raise ValidationError(
            f"unsafe {what} {relative!r}: it is an absolute path",
            hint="runctl only writes inside the destination; rename or skip this object",
        )
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValidationError(
            f"unsafe {what} {relative!r}: it has an empty, '.' or '..' component",
            hint="runctl never writes outside the destination; rename or skip this object",
        )
    return PurePosixPath(*parts)


def safe_join(destination: Path, relative: str, *, what: str = "key") -> Path:
    """``destination / relative``, refused unless it stays inside ``destination`` once resolved."""
    path = destination.joinpath(check_relative_key(relative, what=what))
    root = destination.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValidationError(
            f"unsafe {what} {relative!r}: it resolves to {resolved}, outside {root}",
            hint="a symlink inside the destination points elsewhere; remove it or pick another destination",
        )
    return path
