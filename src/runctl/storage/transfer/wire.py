"""The wire: one signed S3 data request (PUT of an object or a part, GET of an object or a range).

Requests are signed with botocore's SigV4 signer (:class:`Signer`: the URL form and signing region
learnt once from a presigned URL) and sent with botocore's own HTTP session (``URLLib3Session``:
the same pool, TLS and proxy code boto3 uses). This skips botocore's per-call pipeline (events,
endpoint rules, validation, parsing: ~1 ms of Python each), which is what bounds a Python client
on many small files; header signing costs ~0.3 ms less client CPU per request than presigning
each URL. Failures become botocore ``ClientError`` and are classified by the same
:func:`runctl.clients.aws.classify` as every other AWS call.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

from runctl.clients import aws as session
from runctl.core.errors import CloudProviderError, RunctlError, ValidationError

_READ_CHUNK = 1 << 20


class Wire:
    """Data requests to one bucket over one connection pool. Thread-safe."""

    def __init__(self, client: Any, bucket: str, max_connections: int) -> None:
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        self.client = client
        self.bucket = bucket
        config = client.meta.config
        self._http = URLLib3Session(
            verify=os.environ.get("AWS_CA_BUNDLE") or True,
            proxies=config.proxies or get_environ_proxies(client.meta.endpoint_url),
            timeout=(config.connect_timeout, config.read_timeout),
            max_pool_connections=max_connections,
            proxies_config=config.proxies_config,
        )
        self._signer: Signer | None = None  # built on first use: it needs credentials

    def send(
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
                self._signer = Signer(self.client, self.bucket)
            request = self._signer.request(method, key, query, headers or {}, body, stream)
            response = self._http.send(request)
        except Exception as exc:
            raise session.classify(exc, operation=operation, resource_id=key) from exc
        if response.status_code >= 300:
            raise response_error(response, operation, f"s3://{self.bucket}/{key}")
        return response


class Signer:
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


def stream_body(response: Any, *, operation: str) -> Iterator[bytes]:
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


def response_error(response: Any, operation: str, resource: str) -> RunctlError:
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
