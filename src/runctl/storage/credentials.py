"""Credentials for a machine without an instance role (a RunPod pod) to reach its job's storage.

:func:`machine_credentials` is what such a machine gets in its environment: short-lived STS
credentials scoped to the job when the storage is AWS S3, the controller's own keys only where
the user allowed that, and the endpoint and region either way.

A pod must reach its job's storage, but must not carry the controller's long-lived AWS keys:
whoever reads the pod's environment (RunPod's console, a process in the container, a GraphQL
error that echoes the create input) would hold them for good, for everything they allow. So a
pod gets credentials from STS ``GetFederationToken`` that

* allow only the job's own storage prefix: a session policy (the intersection with the caller's
  own permissions) grants object reads, writes and deletes under ``<prefix>/jobs/<id>/*`` and
  nothing else; ``s3:ListBucket`` is granted on the bucket with ``s3:prefix`` limited to that
  prefix (``StringLikeIfExists``: the HeadBucket runctl's storage layer sends first carries no
  prefix);
* expire when the job must be over: its max duration plus :data:`MARGIN_S` (installing runctl,
  fetching the code and checkpoint, the final upload), at least STS's minimum, and at most
  STS's limit for federation tokens (:data:`STS_MAX_S`, 36 h).

A job with no max duration, or one too long for that limit, could outlive its credentials and
lose its last checkpoint: it is refused at launch (:func:`credentials_lifetime`, a
:class:`ConfigError` that names the fix) unless ``[runpod] long_lived_credentials = true`` says
the user accepts handing the pod the controller's own keys. GetFederationToken needs an IAM
user's long-term keys; a controller running on temporary credentials (SSO, an assumed role) is
told so, with the same two ways out.

Every secret this module obtains is registered with :mod:`runctl.core.secrets` before it is
returned, so no error, log line or ledger write shows it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runctl.core.errors import AuthError, ConfigError, ValidationError

if TYPE_CHECKING:
    from runctl.core.config import StorageConfig

STS_MIN_S = 900
STS_MAX_S = 129_600  # GetFederationToken with IAM user keys: 36 hours
MARGIN_S = 1800  # setup before the script starts, and the final upload after it stops
MAX_POLICY_CHARS = 2048
LONG_LIVED_KEY = "runpod.long_lived_credentials"


@dataclass(frozen=True)
class ScopedCredentials:
    """Credentials for one job's storage, and what they allow until when."""

    env: dict[str, str]  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
    policy: dict[str, Any]
    duration_s: int
    expires_at: float


def credentials_lifetime(max_duration_s: float | None, *, long_lived_allowed: bool) -> int | None:
    """Seconds the job's STS credentials must last; ``None`` when the job may outlive any STS
    credentials and ``[runpod] long_lived_credentials`` allows the controller's keys instead.
    Raises :class:`ConfigError` when it does not."""
    if max_duration_s is not None and math.isfinite(max_duration_s):
        needed = max(STS_MIN_S, math.ceil(max_duration_s + MARGIN_S))
        if needed <= STS_MAX_S:
            return needed
        why = (
            f"its max duration ({max_duration_s / 3600:.1f} h) plus a {MARGIN_S // 60} min margin is "
            f"longer than short-lived STS credentials last ({STS_MAX_S // 3600} h)"
        )
    else:
        why = "it has no max duration, so it may outlive short-lived STS credentials"
    if long_lived_allowed:
        return None
    raise ConfigError(
        f"refusing to start the job: {why}, and the pod would lose access to its storage",
        key=LONG_LIVED_KEY,
        hint=f"give it --max-duration of at most {(STS_MAX_S - MARGIN_S) // 3600} h, or set "
        "[runpod] long_lived_credentials = true to hand the pod your own AWS keys (any use of them "
        "until you rotate them)",
    )


def _partition(region: str | None) -> str:
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def job_storage_policy(storage_root: str, job_id: str, *, region: str | None = None) -> dict[str, Any]:
    """The session policy: objects under ``<storage_root>/jobs/<job_id>/`` only.
    ``storage_root`` is ``s3://BUCKET[/PREFIX]``, already validated (``[storage] uri``)."""
    name, _, key = storage_root.removeprefix("s3://").partition("/")
    if not storage_root.startswith("s3://") or not name:
        raise ValidationError(f"{storage_root!r} is not an s3:// storage root", hint="set [storage] uri")
    prefix = "/".join(p for p in (key.strip("/"), "jobs", job_id) if p)
    bucket = f"arn:{_partition(region)}:s3:::{name}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "JobObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": f"{bucket}/{prefix}/*",
            },
            {
                "Sid": "JobListing",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket,
                "Condition": {"StringLikeIfExists": {"s3:prefix": [f"{prefix}/*", prefix]}},
            },
        ],
    }


def scoped_credentials(
    job_id: str, storage_root: str, duration_s: int, *, region: str | None = None
) -> ScopedCredentials:
    """STS credentials limited to the job's storage prefix for ``duration_s`` seconds (see the
    module docstring); ``duration_s`` comes from :func:`credentials_lifetime`."""
    from runctl.clients import aws as session
    from runctl.core.secrets import register_all

    if not STS_MIN_S <= duration_s <= STS_MAX_S:
        raise ValidationError(f"STS credentials last {STS_MIN_S}..{STS_MAX_S} s, not {duration_s}")
    policy = job_storage_policy(storage_root, job_id, region=region)
    packed = json.dumps(policy, separators=(",", ":"))
    if len(packed) > MAX_POLICY_CHARS:
        raise ValidationError(
            f"the storage prefix {storage_root} is too long for an STS session policy",
            hint="use a shorter [storage] uri prefix",
        )
    client = session.client("sts", region)
    try:
        answer = session.call(
            client.get_federation_token,
            operation="sts get_federation_token",
            resource_id=job_id,
            Name=f"runctl-{job_id}"[:32],
            Policy=packed,
            DurationSeconds=duration_s,
        )
    except AuthError as exc:
        raise AuthError(
            f"STS refused short-lived storage credentials for job {job_id}: {exc.message}",
            hint="GetFederationToken needs an IAM user's long-term keys and sts:GetFederationToken; "
            "on SSO or role credentials set [runpod] long_lived_credentials = true, or give the "
            "machine an instance role",
            operation="sts get_federation_token",
            resource_id=job_id,
        ) from None
    found = answer["Credentials"]
    register_all((found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"]))
    return ScopedCredentials(
        env={
            "AWS_ACCESS_KEY_ID": found["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": found["SecretAccessKey"],
            "AWS_SESSION_TOKEN": found["SessionToken"],
        },
        policy=policy,
        duration_s=duration_s,
        expires_at=found["Expiration"].timestamp(),
    )


def machine_credentials(
    settings: StorageConfig,
    *,
    job_id: str,
    storage_root: str,
    max_duration_s: float | None,
    long_lived_allowed: bool,
    region: str | None = None,
) -> dict[str, str]:
    """The environment a machine without an instance role needs to reach ``job_id``'s storage.

    On AWS S3: STS credentials limited to the job's prefix for its max duration plus a margin
    (:func:`scoped_credentials`); a job that may outlive them is refused (ConfigError) unless
    ``long_lived_allowed``, and then gets the credentials boto3 resolves here. On another
    S3-compatible store (``[storage] endpoint_url``: MinIO, R2, B2) STS does not exist, so the
    machine gets that store's keys from boto3's chain, as configured. Never logged: every value
    is a registered secret, and providers mask env values in plans and errors.
    """
    import os

    from runctl.clients import aws as session

    region = settings.region or region or os.environ.get("AWS_REGION")
    endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    lifetime = (
        None  # an S3-compatible store named in [storage] has no STS
        if settings.endpoint_url
        else credentials_lifetime(max_duration_s, long_lived_allowed=long_lived_allowed)
    )
    env: dict[str, str] = {}
    if lifetime is not None:
        env.update(scoped_credentials(job_id, storage_root, lifetime, region=region).env)
    elif (found := session.credentials()) is not None:
        env.update(AWS_ACCESS_KEY_ID=found.access_key, AWS_SECRET_ACCESS_KEY=found.secret_key)
        if found.token:
            env["AWS_SESSION_TOKEN"] = found.token
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if region:
        env["AWS_REGION"] = region
    return env
