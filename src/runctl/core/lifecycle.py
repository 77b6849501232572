"""Resource lifecycle over the ledger and a provider: track, transition, clean up on failure.

The seed plan tracked resources in memory and wrote them down after creating them; here the
ledger is written first and is the only state:

* :meth:`Lifecycle.track` writes the ``intent`` row and yields it; the caller passes the row's
  client token and id to the create call, then calls :meth:`Lifecycle.created`. If the block
  raises, the row stays ``intent`` (the call may or may not have reached the cloud) with an
  event saying why; :meth:`cleanup_on_failure` and ``resources reconcile`` resolve it by lookup.
* :meth:`transition` records a state change; whether the new state is billable is the
  provider's answer, so usage intervals (and cost) follow the real machine.
* :meth:`cleanup_on_failure` releases everything a failed job created (persistent volumes
  excepted), verifying each release through the provider, with the cloud retry policy. A
  resource that could not be released stays in the ledger in its last known state and the
  error lists it: the ledger never claims "gone" for something still billing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from runctl.core.cost import BILLING_MINIMUM_KEY
from runctl.core.errors import ResourceError, RunctlError
from runctl.core.ledger import Ledger, Resource
from runctl.core.retry import RetryPolicy


class ResourceHandler(Protocol):
    """What the lifecycle needs of a provider (``runctl.providers.base.ResourceProvider`` is one;
    core names no provider, so it asks for the behaviour, not the class)."""

    @property
    def name(self) -> str: ...

    def lookup(self, resource: Resource) -> str | None: ...

    def release(self, resource: Resource) -> str: ...

    def is_billable(self, kind: str, state: str) -> bool: ...

    def billing_minimum_s(self, kind: str) -> float: ...


class Lifecycle:
    """Creates, moves and releases ledger resources through their providers."""

    def __init__(
        self,
        ledger: Ledger,
        providers: Mapping[str, ResourceHandler],
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.providers = dict(providers)
        self.retry = retry or RetryPolicy.for_cloud_api("release resource")

    def _provider(self, name: str) -> ResourceHandler:
        try:
            return self.providers[name]
        except KeyError:
            raise ResourceError(
                f"no provider {name!r} is available to manage this resource",
                hint="configure that provider, or run the command where it is reachable",
            ) from None

    @contextmanager
    def track(
        self,
        provider: str,
        kind: str,
        *,
        job_id: str | None = None,
        spec: dict[str, Any] | None = None,
        region: str | None = None,
        zone: str | None = None,
        persistent: bool = False,
    ) -> Iterator[Resource]:
        """Write the intent row, yield it; the block creates the resource and calls created().
        The row records the provider's billing minimum for ``kind`` (cost needs no provider)."""
        minimum = self._provider(provider).billing_minimum_s(kind)
        intent = self.ledger.record_intent(
            provider=provider,
            kind=kind,
            job_id=job_id,
            spec={**(spec or {}), **({BILLING_MINIMUM_KEY: minimum} if minimum else {})},
            region=region,
            zone=zone,
            persistent=persistent,
        )
        try:
            yield intent
        except BaseException as exc:
            self.ledger.add_event(
                "resource.create_error",
                f"create {kind} failed or was interrupted: {exc!s}"[:500],
                job_id=job_id,
                resource_id=intent.id,
            )
            raise

    def created(
        self,
        intent: Resource,
        *,
        cloud_id: str,
        state: str,
        rate_usd_per_hour: float | None = None,
        zone: str | None = None,
    ) -> Resource:
        """Record what the cloud answered for an intent row."""
        billable = self._provider(intent.provider).is_billable(intent.kind, state)
        return self.ledger.mark_created(
            intent.id,
            cloud_id=cloud_id,
            state=state,
            billable=billable,
            rate_usd_per_hour=rate_usd_per_hour,
            zone=zone,
        )

    def transition(self, resource: Resource, state: str, *, detail: str | None = None) -> Resource:
        """Record a new state of ``resource``."""
        billable = self._provider(resource.provider).is_billable(resource.kind, state)
        return self.ledger.transition(resource.id, state, billable=billable, detail=detail)

    def release(self, resource: Resource) -> Resource:
        """Release one resource (verified) and record its final state."""
        provider = self._provider(resource.provider)
        if resource.state == "intent" and provider.lookup(resource) is None:
            return self.transition(resource, "create_failed", detail="never created")
        final = self.retry.call(provider.release, resource, operation=f"release {resource.id}")
        return self.transition(resource, final, detail="released")

    def cleanup_on_failure(self, job_id: str) -> list[Resource]:
        """Release every live, non-persistent resource of ``job_id``; returns what was released."""
        released: list[Resource] = []
        failures: list[str] = []
        for resource in self.ledger.list_resources(job_id=job_id, include_gone=False):
            if resource.persistent:
                continue
            try:
                released.append(self.release(resource))
            except RunctlError as exc:
                failures.append(f"{resource.id} ({resource.cloud_id or 'no cloud id'}): {exc}")
                self.ledger.add_event(
                    "resource.release_failed",
                    str(exc)[:500],
                    job_id=job_id,
                    resource_id=resource.id,
                )
        if failures:
            raise ResourceError(
                f"could not release {len(failures)} resource(s) of job {job_id}: " + "; ".join(failures),
                operation="cleanup",
                hint="they are still recorded as live; retry with 'runctl resources cleanup' "
                "or check the provider's console",
            )
        return released
