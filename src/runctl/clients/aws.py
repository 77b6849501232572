"""boto3 clients for runctl, and the one place AWS errors become runctl errors.

* Clients are built lazily (importing boto3 and building a client costs ~0.9 s: commands that do
  not touch AWS never pay it) and cached per (service, region).
* Credentials come from boto3's own chain only. Whatever it resolved (environment,
  ``~/.aws/credentials``, a profile, SSO, a role) is registered as a secret
  (:mod:`runctl.core.secrets`) when a client is built: no error, log line or ledger write
  shows it. The endpoint comes from boto3's standard
  ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables (that is how tests reach a
  moto server on loopback).
* Timestamps in answers are parsed with :func:`datetime.fromisoformat` when they are ISO 8601
  (S3 listings, EC2), falling back to botocore's parser: its dateutil path costs ~0.2 ms per
  value, 0.2 s of every 1000-key listing.
* boto3's retries are set to one attempt (``total_max_attempts=1``): :class:`RetryPolicy` is the only
  retry layer, so the two never multiply into a storm.
* :func:`credentials` and :func:`default_region` read boto3's default chain (environment,
  profile, instance role) the way a client would, for the checks and hand-offs that need the
  values themselves (``doctor``; a pod that reaches S3 without an instance role).
* :func:`classify` maps botocore exceptions to :mod:`runctl.core.errors` once, here:
  throttling and 5xx are retryable; capacity errors are :class:`CapacityError` (the caller tries
  another zone or market); quota, auth and validation errors fail at once with a hint.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from runctl.core.errors import (
    AuthError,
    CapacityError,
    CloudProviderError,
    ConfigError,
    NotFoundError,
    QuotaError,
    RunctlError,
    ThrottledError,
)
from runctl.core.retry import RetryPolicy

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "ProvisionedThroughputExceededException",
        "EC2ThrottledException",
        "PriorRequestNotComplete",
    }
)
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientVolumeCapacity",
    }
)
QUOTA_CODES = frozenset(
    {"VcpuLimitExceeded", "InstanceLimitExceeded", "VolumeLimitExceeded", "ResourceLimitExceeded"}
)
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "OptInRequired",
        "403",  # S3 HEAD requests have no body: only the status says "access denied"
        "Forbidden",
    }
)
NOT_FOUND_SUFFIXES = (".NotFound", ".Malformed")
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404", "NoSuchUpload"})

_clients: dict[tuple[str, str | None, float | None, str | None], Any] = {}
_lock = threading.Lock()


def client(
    service: str, region: str | None = None, *, timeout: float | None = None, endpoint_url: str | None = None
) -> Any:
    """A cached boto3 client for ``service`` with runctl's timeouts and single-attempt retries.

    ``timeout`` (seconds) replaces the connect and read timeouts, for quick probes (doctor).
    ``endpoint_url`` overrides boto3's endpoint (``[storage] endpoint_url``: MinIO, R2, ...).
    """
    key = (service, region, timeout, endpoint_url)
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config as BotoConfig
            from botocore.exceptions import NoRegionError

            from runctl.version import __version__

            boto_config = BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=timeout or 10,
                read_timeout=timeout or 60,
                user_agent_extra=f"runctl/{__version__}",
                max_pool_connections=32,
                # S3: SigV4 for presigned URLs too (botocore still presigns SigV2 in us-east-1,
                # which buckets created since 2020 refuse)
                signature_version="s3v4" if service == "s3" else None,
            )
            core = _botocore_session()
            try:
                _clients[key] = boto3.session.Session(botocore_session=core).client(
                    service, region_name=region, config=boto_config, endpoint_url=endpoint_url
                )
                _register_credentials(core)
            except NoRegionError:
                raise ConfigError(
                    "no AWS region is configured",
                    key="aws.region",
                    hint="set [aws] region in .runctl.toml, or AWS_REGION in the environment",
                ) from None
        return _clients[key]


def _botocore_session() -> Any:
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return core


def _register_credentials(core: Any) -> None:
    """Mask the credentials botocore resolved for this client (cached by the session: free)."""
    from runctl.core.secrets import register_all

    try:
        credentials = core.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except Exception:  # an expired SSO token, say: the first call reports it, classified
        return
    if frozen is not None:
        register_all((frozen.access_key, frozen.secret_key, frozen.token))


def parse_timestamp(value: Any) -> datetime:
    """An answer's timestamp: ISO 8601 by ``fromisoformat`` (naive means UTC), else botocore's way."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    from botocore.utils import parse_timestamp as botocore_parse

    return botocore_parse(value)


@dataclass(frozen=True)
class Credentials:
    """One set of AWS credentials, as found now. Never logged: the repr hides the secrets."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def credentials() -> Credentials | None:
    """The credentials boto3's default chain finds (None when it finds none); a broken
    ``~/.aws/config`` or an unknown ``AWS_PROFILE`` is raised classified."""
    try:
        import boto3

        found = boto3.session.Session().get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except Exception as exc:
        raise classify(exc, operation="load AWS credentials") from exc
    if frozen is None:
        return None
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def default_region() -> str | None:
    """The region boto3 would use with no ``region_name`` (``AWS_REGION``, the profile's)."""
    try:
        import boto3

        region: str | None = boto3.session.Session().region_name
    except Exception as exc:
        raise classify(exc, operation="load the AWS region") from exc
    return region


def sts_endpoint(region: str, environ: Mapping[str, str]) -> str:
    """The STS endpoint boto3 would use (honouring AWS_ENDPOINT_URL[_STS])."""
    return (
        environ.get("AWS_ENDPOINT_URL_STS")
        or environ.get("AWS_ENDPOINT_URL")
        or f"https://sts.{region}.amazonaws.com"
    )


def reset_clients() -> None:
    """Forget cached clients (tests that move the endpoint; after credentials change)."""
    with _lock:
        _clients.clear()


def classify(exc: BaseException, *, operation: str, resource_id: str | None = None) -> RunctlError:
    """The runctl error for a botocore/boto3 exception (anything else is returned wrapped)."""
    if isinstance(exc, RunctlError):
        return exc
    from botocore import exceptions as bx

    common: dict[str, Any] = {"operation": operation, "resource_id": resource_id, "provider": "aws"}
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{operation}: {code}: {message}"
        if code in THROTTLING_CODES or status >= 500 or status == 429:
            return ThrottledError(text, hint="AWS is throttling or failing; runctl retries", **common)
        if code in CAPACITY_CODES:
            return CapacityError(
                text,
                hint="try another availability zone, instance type or market (spot/on-demand)",
                **common,
            )
        if code in QUOTA_CODES:
            return QuotaError(
                text,
                hint="request a quota increase in the AWS Service Quotas console, "
                "or stop instances you no longer need",
                **common,
            )
        if code in AUTH_CODES:
            return AuthError(
                text,
                hint="check your AWS credentials and IAM permissions (aws sts get-caller-identity)",
                **common,
            )
        if code.endswith(NOT_FOUND_SUFFIXES) or code in NOT_FOUND_CODES or status == 404:
            return NotFoundError(
                text, hint="check the id or name", operation=operation, resource_id=resource_id
            )
        return CloudProviderError(text, hint="check the values passed to this command", **common)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(
            f"{operation}: no AWS credentials found",
            hint="configure credentials (aws configure, AWS_PROFILE, or an instance role)",
            **common,
        )
    if isinstance(exc, bx.NoRegionError):
        return ConfigError(
            "no AWS region is configured", key="aws.region", hint="set [aws] region, or AWS_REGION"
        )
    if isinstance(
        exc,
        bx.EndpointConnectionError
        | bx.ConnectionError
        | bx.ReadTimeoutError
        | bx.ConnectTimeoutError
        | bx.ConnectionClosedError,
    ):
        return CloudProviderError(
            f"{operation}: cannot reach AWS: {exc}",
            retryable=True,
            hint="check the network and AWS_ENDPOINT_URL",
            **common,
        )
    return CloudProviderError(f"{operation}: {type(exc).__name__}: {exc}", **common)


def call(
    fn: Callable[..., T],
    *,
    operation: str,
    policy: RetryPolicy | None = None,
    resource_id: str | None = None,
    **kwargs: Any,
) -> T:
    """Call a boto3 method under the retry policy, with every failure classified."""

    def attempt() -> T:
        started, outcome = time.perf_counter(), "ok"
        try:
            return fn(**kwargs)
        except Exception as exc:
            error = classify(exc, operation=operation, resource_id=resource_id)
            outcome = type(error).__name__
            raise error from exc
        finally:
            _observe(fn, operation, outcome, time.perf_counter() - started)

    return (policy or RetryPolicy.for_cloud_api(operation)).call(attempt, operation=operation)


def _observe(fn: Callable[..., Any], operation: str, outcome: str, seconds: float) -> None:
    """Count one attempt in ``runctl_cloud_api_calls``. A boto3 client method gives bounded
    labels (its service and API name); anything else falls back to ``aws`` and ``operation``.

    Only when metrics are being collected (the metrics module is loaded: ``--metrics-port``,
    a textfile or a Pushgateway is configured): prometheus-client costs 0.13 s to import, which
    every short AWS command would otherwise pay."""
    metrics = sys.modules.get("runctl.core.metrics")
    if metrics is None:
        return

    meta = getattr(getattr(fn, "__self__", None), "meta", None)
    if meta is not None and hasattr(meta, "service_model"):
        service, api = meta.service_model.service_name, fn.__name__
    else:
        service, api = "aws", operation
    metrics.observe_api_call(service, api, outcome, seconds)
