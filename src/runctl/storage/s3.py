"""S3 (and any S3-compatible store) as storage.

All AWS calls go through :mod:`runctl.clients.aws` (boto3 client, one retry layer,
one error classification); bulk data moves through :class:`runctl.storage.transfer.S3Transfer`.
The endpoint is boto3's (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``) unless ``endpoint_url`` is
given. Before the first write or bulk transfer the bucket is checked once (``HEAD bucket``), so
a missing bucket or refused credentials fail with a clear error before any work starts.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from runctl.clients import aws as session
from runctl.core.errors import AuthError, NotFoundError
from runctl.storage import checksums
from runctl.storage.base import ObjectInfo, ProgressFn, Storage
from runctl.storage.checksums import MD5_ETAG, ChecksumMismatchError, check_stored
from runctl.storage.transfer import S3Transfer, TransferSettings
from runctl.storage.uri import S3Uri, parse_s3_uri, validate_key

_DELETE_BATCH = 1000


class S3Storage(Storage):
    """Storage under ``s3://bucket/prefix``."""

    def __init__(
        self,
        uri: str | S3Uri,
        *,
        settings: TransferSettings | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        location = uri if isinstance(uri, S3Uri) else parse_s3_uri(uri, arg="storage URI")
        self.bucket = location.bucket
        self.prefix = location.as_prefix()
        self.settings = settings or TransferSettings()
        self._endpoint_url = endpoint_url
        self._region = region
        self._transfer: S3Transfer | None = None
        self._bucket_checked = False

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        return session.client("s3", self._region, endpoint_url=self._endpoint_url)

    @property
    def transfer(self) -> S3Transfer:
        if self._transfer is None:
            self._transfer = S3Transfer(self.client, self.bucket, self.settings)
        return self._transfer

    def _key(self, key: str) -> str:
        return validate_key(self.prefix + key, arg="key")

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) :]

    def check_bucket(self) -> None:
        """Fail early, and clearly, when the bucket is missing or access is refused.

        Also learns the bucket's region, so requests are signed for it.
        """
        if self._bucket_checked:
            return
        operation = f"check bucket s3://{self.bucket}"
        try:
            head = session.call(self.client.head_bucket, operation=operation, Bucket=self.bucket)
        except NotFoundError:
            raise NotFoundError(
                f"bucket s3://{self.bucket} does not exist",
                hint=f"check the name, or create it: aws s3 mb s3://{self.bucket}",
                operation=operation,
                resource_id=self.bucket,
            ) from None
        except AuthError:
            raise AuthError(
                f"access to bucket s3://{self.bucket} was refused",
                hint="check your AWS credentials and that their IAM policy allows s3:ListBucket, "
                "s3:GetObject and s3:PutObject on this bucket",
                operation=operation,
                resource_id=self.bucket,
            ) from None
        self._bucket_checked = True
        region = head.get("BucketRegion") or head["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amz-bucket-region"
        )
        if region and self._region is None and region != self.client.meta.region_name:
            # data requests are presigned: they must name the bucket's own region (boto3's calls
            # would follow S3's redirect; a presigned URL cannot)
            self._region = region
            self._transfer = None

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        full = self._key(key)
        digest = hashlib.md5(data).digest()
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        extra["Metadata"] = {checksums.METADATA_KEY: checksums.format_crc32(zlib.crc32(data))}
        response = session.call(
            self.client.put_object,
            operation=f"write s3://{self.bucket}/{full}",
            resource_id=full,
            Bucket=self.bucket,
            Key=full,
            Body=data,
            ContentMD5=base64.b64encode(digest).decode(),
            **extra,
        )
        etag = (response.get("ETag") or "").strip('"')
        check_stored(etag, response.get("ServerSideEncryption"), digest, f"write s3://{self.bucket}/{full}")
        return ObjectInfo(key=key, size=len(data), mtime=time.time(), etag=etag or None)

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        operation = f"read s3://{self.bucket}/{full}"

        def read() -> tuple[bytes, dict[str, Any]]:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            return response["Body"].read(), response

        try:
            data, response = session.call(read, operation=operation, resource_id=full)
        except NotFoundError:
            raise NotFoundError(f"s3://{self.bucket}/{full} does not exist", hint="check the key") from None
        etag = (response.get("ETag") or "").strip('"')
        if len(data) != response.get("ContentLength", len(data)) or (
            MD5_ETAG.match(etag)
            and response.get("ServerSideEncryption") not in ("aws:kms", "aws:kms:dsse")
            and hashlib.md5(data).hexdigest() != etag
        ):
            raise ChecksumMismatchError(
                f"{operation}: the content does not match its ETag", hint="read it again"
            )
        return data

    def stat(self, key: str) -> ObjectInfo | None:
        full = self._key(key)
        try:
            head = session.call(
                self.client.head_object,
                operation=f"look up s3://{self.bucket}/{full}",
                resource_id=full,
                Bucket=self.bucket,
                Key=full,
            )
        except NotFoundError:
            return None
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            mtime=head["LastModified"].timestamp(),
            etag=(head.get("ETag") or "").strip('"') or None,
        )

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        full_prefix = self.prefix + prefix
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        operation = f"list s3://{self.bucket}/{full_prefix}"
        while True:
            page = session.call(self.client.list_objects_v2, operation=operation, **kwargs)
            entries: list[ObjectInfo] = [
                ObjectInfo(key=self._relative(p["Prefix"]), size=0, mtime=0.0, is_dir=True)
                for p in page.get("CommonPrefixes", [])
            ]
            entries.extend(
                ObjectInfo(
                    key=self._relative(o["Key"]),
                    size=int(o["Size"]),
                    mtime=o["LastModified"].timestamp(),
                    etag=(o.get("ETag") or "").strip('"') or None,
                )
                for o in page.get("Contents", [])
            )
            entries.sort(key=lambda e: e.key)
            yield from entries
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, keys: Iterable[str]) -> int:
        full = [self._key(k) for k in keys]
        for start in range(0, len(full), _DELETE_BATCH):
            chunk = full[start : start + _DELETE_BATCH]
            response = session.call(
                self.client.delete_objects,
                operation=f"delete {len(chunk)} object(s) from s3://{self.bucket}",
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            if errors := response.get("Errors"):
                from botocore.exceptions import ClientError

                first = errors[0]
                error = ClientError(
                    {"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}},
                    "DeleteObjects",
                )
                raise session.classify(
                    error,
                    operation=f"delete s3://{self.bucket}/{first.get('Key')}",
                    resource_id=first.get("Key"),
                )
        return len(full)

    def upload_files(
        self, pairs: Sequence[tuple[Path, str]], *, progress: ProgressFn | None = None
    ) -> builtins.list[ObjectInfo]:
        full = [(path, self._key(key)) for path, key in pairs]
        self.check_bucket()
        stored = self.transfer.upload(full, progress=progress)
        return [replace(info, key=self._relative(info.key)) for info in stored]

    def download_files(
        self, pairs: Sequence[tuple[ObjectInfo, Path]], *, progress: ProgressFn | None = None
    ) -> builtins.list[Path]:
        full = [(replace(info, key=self._key(info.key)), path) for info, path in pairs]
        if full:
            self.check_bucket()
        return self.transfer.download(full, progress=progress)

    def presign(self, key: str, *, expires: int = 3600, method: str = "get") -> str:
        """A URL that lets anyone holding it GET (or PUT) ``key`` for ``expires`` seconds."""
        full = self._key(key)
        client_method = {"get": "get_object", "put": "put_object"}[method]
        try:
            return str(
                self.client.generate_presigned_url(
                    client_method, Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires
                )
            )
        except Exception as exc:
            raise session.classify(exc, operation=f"presign s3://{self.bucket}/{full}") from exc
