"""Reconcile the ledger with the clouds, and clean up what runctl left behind.

**Reconcile** compares, for every cloud provider (the discovery half of
:class:`~runctl.providers.base.ComputeProvider`),
the ledger's rows with what the cloud reports — in both directions:

1. ``intent`` rows (a crash or failure between writing the intent and recording the answer) are
   looked up by their ``runctl:resource`` tag (RunPod: the pod name ``runctl-<resource id>``):
   found → ``record_created`` (cloud id, state, a rate from the catalogue or the pod's own
   ``costPerHr``); not found → ``never_created`` (``create_failed``) — **but only once the row is
   older than the intent grace period** (:data:`~runctl.providers.base.INTENT_GRACE_S`, 10
   minutes; ``resources reconcile --intent-grace``). A younger row may belong to a create still
   in flight in another runctl process, so it is reported as ``in_flight`` and left alone
   (cleanup skips it too). :func:`settle` (one row, as ``runpod status`` asks) applies the same
   rule. Right after a crash, when no other runctl is creating anything,
   ``--intent-grace 0`` settles such rows at once. Even a row marked too early is safe: the
   creating process's own update wins, since recording a create always sets the state again.
2. rows whose resource the cloud no longer has, or reports terminated/deleted → ``gone``
   (their usage interval closes).
3. rows whose state differs from the cloud's → ``update_state`` — including a row the ledger
   thought gone whose resource is alive, the worst case: a machine billing unseen.
4. runctl-tagged resources no row knows (a crash after the create call, a lost ledger) →
   ``adopt``: a new row, and the resource retagged to point at it. Resources tagged with another
   ``runctl:user`` are reported as ``foreign`` and never adopted: they belong in that user's
   ledger (and so are never swept by this user's cleanup).

Reconcile never creates or destroys cloud resources: it writes the ledger (and retags adopted
resources). Without ``--apply`` it only prints the plan.

Other runctl processes may create, change and release resources while reconcile runs, so a plan
never overrides them: a state change is applied only if the row is still in the state the plan
read (compare-and-set), and a tagged resource whose row appeared after the plan read the ledger
is that row's (a create in flight), not one to adopt.

Providers without tags (RunPod) cannot have an adopted resource retagged: the new row follows
the resource by its cloud id, and an event says so.

**Cleanup** releases live rows older than a threshold, never persistent ones and never a
resource tagged ``runctl:protect=true``; instances go first (so their volumes detach), each
release is verified by the provider, and a failure leaves that row in its last known state and
is reported with the others at the end. Cleanup acts on the ledger only: untracked resources
must be adopted by reconcile first, so that nothing is destroyed that runctl never recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runctl.core.errors import RunctlError
from runctl.core.ledger import GONE_RESOURCE_STATES, Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.providers.base import INTENT_GRACE_S, ComputeProvider, ManagedResource

#: Cleanup releases kinds in this order (anything else last): machines before their disks.
RELEASE_ORDER = {"instance": 0, "pod": 0, "volume": 1}


@dataclass(frozen=True)
class Action:
    """One step of a reconcile plan."""

    action: str  # record_created | never_created | in_flight | gone | update_state | adopt | foreign
    provider: str
    kind: str
    resource_id: str | None
    cloud_id: str | None
    from_state: str | None
    to_state: str | None
    detail: str = ""
    found: ManagedResource | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "found"}
        data["zone"] = self.found.zone if self.found else None
        return data


def plan_reconcile(
    ledger: Ledger,
    providers: Mapping[str, ComputeProvider],
    *,
    user: str | None = None,
    intent_grace_s: float = INTENT_GRACE_S,
    now: float | None = None,
) -> list[Action]:
    """What it takes to make the ledger agree with the clouds (nothing is changed)."""
    now = time.time() if now is None else now
    actions: list[Action] = []
    for name, provider in providers.items():
        rows = ledger.list_resources(provider=name)
        known = {row.id for row in rows}
        cloud = provider.list_managed()
        by_cloud_id = {c.cloud_id: c for c in cloud}
        claimed: set[str] = set()
        for row in rows:
            young = row.state == "intent" and now - row.created_at < intent_grace_s
            action = _row_action(row, provider, by_cloud_id, young=young)
            if action is not None:
                actions.append(action)
            if row.cloud_id:
                claimed.add(row.cloud_id)
            elif action is not None and action.cloud_id:
                claimed.add(action.cloud_id)
        for found in cloud:
            if found.cloud_id in claimed or _created_meanwhile(ledger, found, known):
                continue
            foreign = user is not None and found.user is not None and found.user != user
            actions.append(
                Action(
                    "foreign" if foreign else "adopt",
                    name,
                    found.kind,
                    None,
                    found.cloud_id,
                    None,
                    found.state,
                    f"tagged by user {found.user}; left to their ledger"
                    if foreign
                    else "runctl-tagged but not in the ledger",
                    found,
                )
            )
    return actions


def _created_meanwhile(ledger: Ledger, found: ManagedResource, known: set[str]) -> bool:
    """Whether ``found`` belongs to a row written after this plan read the ledger: a create in
    flight in another process (its intent row is written before the cloud call), not a stray."""
    if not found.ledger_id or found.ledger_id in known:
        return False
    try:
        ledger.get_resource(found.ledger_id)
    except RunctlError:
        return False
    return True


def _row_action(
    row: Resource, provider: ComputeProvider, by_cloud_id: dict[str, ManagedResource], *, young: bool
) -> Action | None:
    gone = provider.gone_state(row.kind)

    def make(action: str, to_state: str | None, detail: str, found: ManagedResource | None) -> Action:
        cloud_id = found.cloud_id if found else row.cloud_id
        return Action(action, row.provider, row.kind, row.id, cloud_id, row.state, to_state, detail, found)

    if row.state == "intent":
        found = provider.find(row)
        if found is None and young:
            return make("in_flight", None, "no resource yet; its create may still be running", None)
        if found is None:
            return make("never_created", "create_failed", "no resource carries its tag", None)
        return make("record_created", found.state, "found by its runctl:resource tag", found)
    if not row.cloud_id:
        return None
    found = by_cloud_id.get(row.cloud_id)
    if found is None:
        if row.is_gone:
            return None
        found = provider.find(row)
    if found is None or found.state in (gone, *GONE_RESOURCE_STATES):
        if row.is_gone:
            return None
        return make("gone", gone, "the cloud no longer has it", None)
    if found.state != row.state:
        detail = "the ledger said gone but it is alive" if row.is_gone else "state changed"
        return make("update_state", found.state, detail, found)
    return None


def apply_reconcile(
    lifecycle: Lifecycle, providers: Mapping[str, ComputeProvider], actions: list[Action]
) -> None:
    """Carry out a reconcile plan (ledger writes and retags only)."""
    ledger = lifecycle.ledger
    for action in actions:
        provider = providers[action.provider]
        if action.action == "record_created" and action.found is not None:
            row = ledger.get_resource(_row_id(action))
            if row.state != "intent":
                continue  # its own process recorded it meanwhile
            price = provider.rate_for(action.found)
            lifecycle.created(
                row,
                cloud_id=action.found.cloud_id,
                state=action.found.state,
                rate_usd_per_hour=price.usd_per_hour,
                zone=action.found.zone,
            )
            _note(ledger, row, "reconcile: " + (price.note or "recorded the resource found by its tag"))
        elif action.action in ("never_created", "gone", "update_state"):
            to_state = action.to_state or ""
            ledger.transition(  # only if no other process moved the row since the plan was made
                _row_id(action),
                to_state,
                billable=provider.is_billable(action.kind, to_state),
                detail=f"reconcile: {action.detail}",
                expect=action.from_state,
            )
        elif action.action == "adopt" and action.found is not None:
            _adopt(lifecycle, provider, action.found)


def _row_id(action: Action) -> str:
    """The ledger row an action on an existing row acts on (only ``adopt`` has none)."""
    if action.resource_id is None:
        raise ValueError(f"a {action.action} action names no ledger row")
    return action.resource_id


def _adopt(lifecycle: Lifecycle, provider: ComputeProvider, found: ManagedResource) -> Resource:
    ledger = lifecycle.ledger
    job_id = found.job_id
    if job_id is not None:
        try:
            ledger.get_job(job_id)
        except RunctlError:
            job_id = None
    intent = ledger.record_intent(
        provider=provider.name,
        kind=found.kind,
        job_id=job_id,
        spec={"adopted": True, "tagged_resource": found.ledger_id, **found.detail},
        region=found.region,
        zone=found.zone,
        persistent=found.persistent,
    )
    price = provider.rate_for(found)
    row = lifecycle.created(
        intent,
        cloud_id=found.cloud_id,
        state=found.state,
        rate_usd_per_hour=price.usd_per_hour,
        zone=found.zone,
    )
    _note(ledger, row, f"reconcile: adopted {found.cloud_id}" + (f"; {price.note}" if price.note else ""))
    try:
        provider.retag(found, row.id)
    except RunctlError as exc:
        _note(ledger, row, f"could not retag {found.cloud_id} to {row.id}: {exc}")
    return row


def _note(ledger: Ledger, row: Resource, message: str) -> None:
    ledger.add_event("resource.reconcile", message[:500], job_id=row.job_id, resource_id=row.id)


@dataclass(frozen=True)
class CleanupItem:
    """A live ledger row and what cleanup does with it (``release``, or ``skip`` and why)."""

    resource: Resource
    action: str
    reason: str
    outcome: str | None = None  # after run_cleanup: the final state, or the error

    def to_dict(self) -> dict[str, Any]:
        r = self.resource
        return {
            "resource_id": r.id,
            "provider": r.provider,
            "kind": r.kind,
            "cloud_id": r.cloud_id,
            "state": r.state,
            "created_at": r.created_at,
            "action": self.action,
            "reason": self.reason,
            "outcome": self.outcome,
        }


def plan_cleanup(
    ledger: Ledger,
    providers: Mapping[str, ComputeProvider],
    *,
    older_than: float | None = None,
    now: float | None = None,
    intent_grace_s: float = INTENT_GRACE_S,
) -> list[CleanupItem]:
    """Which live rows cleanup would release, and which it keeps (and why)."""
    now = time.time() if now is None else now
    items: list[CleanupItem] = []
    for name, provider in providers.items():
        cloud = {c.cloud_id: c for c in provider.list_managed()}
        for row in ledger.list_resources(provider=name, include_gone=False):
            if older_than is not None and row.created_at > now - older_than:
                continue
            if row.persistent:
                items.append(CleanupItem(row, "skip", "persistent"))
                continue
            if row.state == "intent" and now - row.created_at < intent_grace_s:
                items.append(CleanupItem(row, "skip", "being created (intent younger than the grace)"))
                continue
            found = cloud.get(row.cloud_id or "") or provider.find(row)
            if found is not None and found.protected:
                items.append(CleanupItem(row, "skip", "tagged runctl:protect=true"))
            elif found is not None and found.persistent:
                items.append(CleanupItem(row, "skip", "tagged runctl:persistent=true"))
            else:
                items.append(
                    CleanupItem(row, "release", "runctl-managed" if found else "not found in the cloud")
                )
    return sorted(items, key=lambda i: (RELEASE_ORDER.get(i.resource.kind, 9), i.resource.created_at))


def run_cleanup(lifecycle: Lifecycle, items: list[CleanupItem]) -> list[CleanupItem]:
    """Release the ``release`` items (verified); returns every item with its outcome."""
    done: list[CleanupItem] = []
    for item in items:
        if item.action != "release":
            done.append(item)
            continue
        try:
            row = lifecycle.release(lifecycle.ledger.get_resource(item.resource.id))
            done.append(CleanupItem(item.resource, "release", item.reason, row.state))
        except RunctlError as exc:
            lifecycle.ledger.add_event(
                "resource.release_failed",
                f"cleanup: {exc}"[:500],
                job_id=item.resource.job_id,
                resource_id=item.resource.id,
            )
            done.append(CleanupItem(item.resource, "failed", item.reason, str(exc)))
    return done


def settle(
    lifecycle: Lifecycle,
    provider: ComputeProvider,
    resource: Resource,
    *,
    intent_grace_s: float = INTENT_GRACE_S,
) -> Resource:
    """Reconcile one ledger row with its provider (the rules of :func:`plan_reconcile`, one row):
    returns the row as it stands afterwards."""
    if resource.is_gone and resource.state != "intent":
        return resource
    young = resource.state == "intent" and time.time() - resource.created_at < intent_grace_s
    action = _row_action(resource, provider, {}, young=young)
    if action is not None:
        apply_reconcile(lifecycle, {provider.name: provider}, [action])
    return lifecycle.ledger.get_resource(resource.id)
