"""S3 locations: ``s3://bucket/key`` URIs and S3's naming rules, checked without any I/O.

* :func:`parse_s3_uri` checks the bucket against S3's naming rules (3–63 characters of lowercase
  letters, digits, dots and hyphens, starting and ending with a letter or digit, no ``..``, not an
  IP address, none of the reserved prefixes/suffixes) and the key against its length limit (1024
  bytes of UTF-8), and names the argument and the fix when either is wrong. Legacy bucket names
  with capitals or underscores are refused: S3 has not allowed creating them since 2018.

It lives in core because configuration validates ``[storage] uri`` and ``[aws] s3_bucket`` on
load, and core imports nothing above it; :mod:`runctl.storage` builds its S3 store on it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from runctl.core.errors import UsageError, ValidationError

S3_SCHEME = "s3://"
MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(frozen=True)
class S3Uri:
    """A bucket and a key (the key may be empty or a prefix ending in ``/``)."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last component of the key (``a/b/c.pt`` → ``c.pt``)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def as_prefix(self) -> str:
        """The key as a "directory": empty, or ending in exactly one ``/``."""
        return self.key.rstrip("/") + "/" if self.key.strip("/") else ""

    def join(self, relative: str) -> S3Uri:
        return S3Uri(self.bucket, self.as_prefix() + relative)


def is_s3_uri(text: str) -> bool:
    return text.lower().startswith(S3_SCHEME)


def validate_bucket(bucket: str, *, arg: str = "URI") -> str:
    """Return ``bucket`` if S3 allows the name, else raise a :class:`ValidationError` saying why."""
    problem = None
    if not 3 <= len(bucket) <= 63:
        problem = f"is {len(bucket)} characters long (S3 allows 3 to 63)"
    elif bucket != bucket.lower() or "_" in bucket:
        problem = "has capital letters or underscores (S3 allows lowercase letters, digits, '.' and '-')"
    elif not _BUCKET_RE.match(bucket):
        problem = (
            "may hold only lowercase letters, digits, '.' and '-', and must start and end with a "
            "letter or digit"
        )
    elif ".." in bucket or ".-" in bucket or "-." in bucket:
        problem = "has '..', '.-' or '-.' in it"
    elif _is_ip(bucket):
        problem = "looks like an IP address"
    elif bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
        problem = "uses a prefix or suffix S3 reserves"
    if problem:
        raise ValidationError(
            f"{arg}: bucket name {bucket!r} {problem}",
            hint="check the bucket name (e.g. s3://my-training-bucket/checkpoints)",
        )
    return bucket


def validate_key(key: str, *, arg: str = "URI") -> str:
    """Return ``key`` if S3 can store it (at most 1024 bytes of UTF-8, no NUL)."""
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValidationError(
            f"{arg}: the key is longer than S3's limit of {MAX_KEY_BYTES} bytes",
            hint="use a shorter prefix or file name",
        )
    if "\x00" in key:
        raise ValidationError(f"{arg}: the key contains a NUL character", hint="rename the file")
    return key


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_s3_uri(text: str, *, arg: str = "URI", require_key: bool = False) -> S3Uri:
    """Parse ``s3://bucket[/key]``; errors name ``arg`` and show the expected form."""
    if not is_s3_uri(text):
        raise UsageError(f"{arg}: {text!r} is not an s3:// URI", hint="write s3://BUCKET/PREFIX")
    rest = text[len(S3_SCHEME) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UsageError(
            f"{arg}: {text!r} has no bucket name", hint="write s3://BUCKET/PREFIX, e.g. s3://my-bucket/runs"
        )
    validate_bucket(bucket, arg=arg)
    validate_key(key, arg=arg)
    if require_key and not key.strip("/"):
        raise UsageError(
            f"{arg}: {text!r} names a bucket but no object", hint=f"write {text.rstrip('/')}/KEY"
        )
    return S3Uri(bucket, key)


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_location(text: str, *, arg: str = "storage URI") -> str:
    """``text`` if it can be a storage location (``s3://…`` or a directory path); an empty value
    or another scheme (``gs://``, ``ftp://``, ``file://``) would silently become a local
    directory named after it, so it is a :class:`ValidationError` naming ``arg``."""
    if not text.strip():
        raise ValidationError(f"{arg} is empty", hint="write s3://BUCKET/PREFIX or a directory path")
    if _SCHEME_RE.match(text) and not is_s3_uri(text):
        raise ValidationError(
            f"{arg} {text!r}: only s3:// URIs and directory paths are storage",
            hint="write s3://BUCKET/PREFIX (any S3-compatible store: set [storage] endpoint_url) "
            "or a directory path",
        )
    return text
