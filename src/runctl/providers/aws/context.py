"""How runctl talks to one AWS region: clients, retry policies, tags, ids, ownership and waits.

Shared by the EC2, EBS, AMI and pricing modules, so that each of them stays about one thing.

Decisions recorded here:

* **Tags.** Everything runctl creates carries ``runctl:managed=true``, ``runctl:resource=<ledger
  id>``, ``runctl:kind`` (instance | volume | snapshot | root-volume), ``runctl:user``,
  ``runctl:job`` (empty when the resource belongs to no job) and ``Name``. Volumes made with
  ``--persistent`` also carry ``runctl:persistent=true``. A user who tags a resource
  ``runctl:protect=true`` shields it from ``resources cleanup`` and from terminate/delete without
  ``--force``.
* **Ids** are checked locally (``i-``, ``vol-``, ``snap-``, ``ami-`` + 8 or 17 hex digits) before
  any call, so a typo is a validation error (exit 65), not a cloud error.
* **Ownership.** A resource is runctl's when the ledger has it or it carries
  ``runctl:managed=true``. Stopping, terminating or deleting anything else needs ``--force``.
* **Waits** (instance running, volume available, …) poll with the poll policy's jittered backoff
  and deadline. A wait is not a failure, so polls are not logged or counted as retries; running
  out of time is a :class:`ResourceError` that carries the last state seen.
* **Calls.** Every boto3 call goes through :func:`runctl.clients.aws.call` (retries +
  classification) or, where the caller needs its own retry loop, through
  :func:`~runctl.clients.aws.classify`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from runctl.clients import aws
from runctl.core.config import AwsConfig
from runctl.core.errors import ConfigError, ResourceError, RunctlError, ValidationError
from runctl.core.identity import current_user
from runctl.core.ledger import Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.retry import RetryPolicy
from runctl.providers.base import (  # runctl's tag names live with the provider interface
    TAG_JOB,
    TAG_KIND,
    TAG_MANAGED,
    TAG_PERSISTENT,
    TAG_PROTECT,
    TAG_RESOURCE,
    TAG_USER,
)

__all__ = [
    "TAG_JOB",
    "TAG_KIND",
    "TAG_MANAGED",
    "TAG_PERSISTENT",
    "TAG_PROTECT",
    "TAG_RESOURCE",
    "TAG_USER",
    "AwsContext",
    "check_id",
    "create_once",
    "ensure_owned",
    "error_code",
    "runctl_tags",
    "settle_failed_create",
    "tag_dict",
]

T = TypeVar("T")

_ID_PATTERNS = {
    "instance": ("i", "i-0123456789abcdef0"),
    "volume": ("vol", "vol-0123456789abcdef0"),
    "snapshot": ("snap", "snap-0123456789abcdef0"),
    "image": ("ami", "ami-0123456789abcdef0"),
}


def check_id(value: str, kind: str, *, argument: str | None = None) -> str:
    """``value`` if it is a well-formed EC2 id of ``kind``; a ValidationError naming it if not."""
    prefix, example = _ID_PATTERNS[kind]
    if re.fullmatch(rf"{prefix}-(?:[0-9a-f]{{8}}|[0-9a-f]{{17}})", value or ""):
        return value
    name = f"{argument} " if argument else ""
    raise ValidationError(
        f"{name}{value!r} is not an EC2 {kind} id",
        hint=f"{kind} ids look like {example} ('{prefix}-' and 8 or 17 hex digits)",
    )


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """EC2's ``[{"Key":…, "Value":…}]`` as a plain dict."""
    return {t["Key"]: t.get("Value", "") for t in tags or []}


def runctl_tags(
    kind: str, ledger_id: str, *, job_id: str | None, name: str, extra: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The tags every resource runctl creates carries (see the module docstring)."""
    tags = {
        "Name": name,
        TAG_MANAGED: "true",
        TAG_RESOURCE: ledger_id,
        TAG_KIND: kind,
        TAG_USER: current_user(),
        TAG_JOB: job_id or "",
        **(extra or {}),
    }
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a classified error (``InvalidInstanceType``, …), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code") or "") or None
        seen = seen.__cause__
    return None


def ensure_owned(
    what: str,
    cloud_id: str,
    *,
    row: Resource | None,
    tags: Mapping[str, str],
    force: bool,
    action: str,
) -> None:
    """Refuse ``action`` on a resource runctl does not own, or one tagged protect, without force."""
    if force:
        return
    if row is None and tags.get(TAG_MANAGED) != "true":
        raise ValidationError(
            f"{what} {cloud_id} was not created by runctl (not in the ledger, no {TAG_MANAGED} tag); "
            f"refusing to {action} it",
            resource_id=cloud_id,
            hint=f"check the id; add --force to {action} it anyway",
        )
    if tags.get(TAG_PROTECT, "").lower() == "true":
        raise ValidationError(
            f"{what} {cloud_id} is tagged {TAG_PROTECT}=true; refusing to {action} it",
            resource_id=cloud_id,
            hint=f"remove the tag, or add --force to {action} it anyway",
        )


class AwsContext:
    """One region's clients and policies. Building it is free: nothing is imported or called."""

    def __init__(
        self,
        config: AwsConfig | None = None,
        *,
        region: str | None = None,
        api: RetryPolicy | None = None,
        poll: RetryPolicy | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or AwsConfig()
        self._region = region or self.config.region
        self.api = api or RetryPolicy.for_cloud_api("AWS API call")
        self.poll = poll or RetryPolicy.for_polling("AWS wait")
        self._progress = progress

    @property
    def region(self) -> str:
        """The configured region, else boto3's (AWS_REGION, ~/.aws/config)."""
        if self._region is None:
            import boto3

            self._region = boto3.session.Session().region_name
            if not self._region:
                raise ConfigError(
                    "no AWS region is configured",
                    key="aws.region",
                    hint="set [aws] region in .runctl.toml, or AWS_REGION in the environment",
                )
        return self._region

    def client(self, service: str = "ec2") -> Any:
        return aws.client(service, self.region)

    def call(
        self,
        method: str,
        *,
        service: str = "ec2",
        operation: str | None = None,
        resource_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """``client(service).method(**kwargs)`` with retries and classification."""
        fn = getattr(self.client(service), method)
        return aws.call(
            fn, operation=operation or method, policy=self.api, resource_id=resource_id, **kwargs
        )

    def paginate(self, method: str, key: str, *, service: str = "ec2", **kwargs: Any) -> list[Any]:
        """Every item under ``key`` across the pages of ``method``."""
        items: list[Any] = []
        token: str | None = None
        while True:
            page = self.call(method, service=service, **kwargs, **({"NextToken": token} if token else {}))
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items

    def progress(self, message: str) -> None:
        """Tell the user what is happening (the CLI prints it on stderr; the library is quiet)."""
        if self._progress is not None:
            self._progress(message)

    def wait_until(
        self,
        probe: Callable[[], tuple[bool, str]],
        *,
        what: str,
        resource_id: str,
        timeout: float | None = None,
    ) -> str:
        """Poll ``probe`` (→ (done, state)) until done; returns the final state.

        Stops early with a ResourceError when the probe raises one (a dead end such as a
        terminated instance); at the deadline raises one carrying the last state seen.
        """
        deadline = timeout if timeout is not None else self.poll.deadline
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            done, state = probe()
            if done:
                return state
            elapsed = time.monotonic() - start
            pause = self.poll.backoff(attempt)
            if attempt >= self.poll.max_attempts or (deadline is not None and elapsed + pause > deadline):
                raise ResourceError(
                    f"{resource_id} is still {state} after {elapsed:.0f}s waiting for {what}",
                    resource_id=resource_id,
                    resource_state=state,
                    operation=f"wait for {what}",
                    hint="AWS may be slow; check again with 'runctl aws status' or wait longer",
                )
            time.sleep(pause)


def create_once(
    ctx: AwsContext,
    send: Callable[[], T],
    find: Callable[[], T | None],
    *,
    operation: str,
) -> T:
    """Send one create call under the API policy, the way EC2's ClientToken means it.

    ``send`` is the raw boto3 call; ``find`` looks the resource up by its ``runctl:resource``
    tag. Before any resend (after throttling, a 5xx or a lost connection, when the first try may
    have reached AWS) ``find`` runs first and what it finds is adopted instead of creating twice.
    """
    sent = 0

    def attempt() -> T:
        nonlocal sent
        if sent:
            existing = find()
            if existing is not None:
                return existing
        sent += 1
        try:
            return send()
        except Exception as exc:
            raise aws.classify(exc, operation=operation) from exc

    return ctx.api.call(attempt, operation=operation)


def settle_failed_create(ctx: AwsContext, lifecycle: Lifecycle, intent: Resource) -> None:
    """After a failed create: release whatever it may have made (verified), else mark it never made.

    If even that fails the row stays ``intent`` with an event: ``resources reconcile`` resolves it.
    Never raises, so the caller's original error is the one the user sees.
    """
    try:
        row = lifecycle.release(lifecycle.ledger.get_resource(intent.id))
    except RunctlError as exc:
        lifecycle.ledger.add_event(
            "resource.release_failed",
            f"could not settle after a failed create ({exc}); 'runctl resources reconcile' will"[:500],
            resource_id=intent.id,
        )
        return
    if row.state != "create_failed":
        ctx.progress(f"released {row.cloud_id or row.id}, created before the failure")
