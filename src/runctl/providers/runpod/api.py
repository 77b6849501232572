"""RunPod operations: constant GraphQL documents, typed results, and the create that never doubles.

Every document here is a constant; values go in variables (see :mod:`.graphql`). Small inputs
(``podId``, ``gpuCount``) are written as input objects whose leaves are variables, so nothing
depends on the names RunPod gives those input types; the large create inputs use RunPod's
published type names ``PodFindAndDeployOnDemandInput`` / ``PodRentInterruptableInput``.

Pods are never asked for ``env``: it may hold secrets (storage credentials) that must not reach
a terminal or a log.

**Names are runctl's tags.** RunPod pods have no tags or client tokens; a pod runctl creates is
named ``runctl-<ledger resource id>[-<label>]`` (:func:`pod_name`). That is what lets a crash
between the create call and the ledger update be resolved (the intent row's pod is found by
name), what :meth:`RunpodAPI.deploy` checks before re-sending a create whose first answer was
lost, and what ``resources reconcile`` uses to find pods that runctl made.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from runctl.core.errors import CloudProviderError, NotFoundError, ThrottledError
from runctl.providers.runpod.graphql import AmbiguousRequestError, GraphQLClient

POD_NAME_PREFIX = "runctl-"
_NAME_RE = re.compile(r"^runctl-(r-[0-9a-f]{8})(?:-|$)")
_LABEL_RE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_LABEL = 40

#: RunPod pod states (``desiredStatus``) in which the pod no longer exists.
GONE_STATUSES = frozenset({"TERMINATED"})

_POD_FIELDS = """
fragment RunctlPod on Pod {
  id
  name
  desiredStatus
  costPerHr
  gpuCount
  imageName
  containerDiskInGb
  volumeInGb
  machineId
  lastStatusChange
  runtime { uptimeInSeconds }
  machine { gpuDisplayName }
}
"""
LIST_PODS = "query RunctlListPods { myself { pods { ...RunctlPod } } }" + _POD_FIELDS
GET_POD = "query RunctlGetPod($podId: String!) { pod(input: {podId: $podId}) { ...RunctlPod } }" + _POD_FIELDS
GPU_TYPES = """
query RunctlGpuTypes($gpuCount: Int!) {
  gpuTypes {
    id
    displayName
    memoryInGb
    secureCloud
    communityCloud
    securePrice
    communityPrice
    secureSpotPrice
    communitySpotPrice
    lowestPrice(input: {gpuCount: $gpuCount}) { minimumBidPrice uninterruptablePrice }
  }
}
"""
DEPLOY_ON_DEMAND = (
    "mutation RunctlDeployOnDemand($input: PodFindAndDeployOnDemandInput!) {"
    " podFindAndDeployOnDemand(input: $input) { ...RunctlPod } }" + _POD_FIELDS
)
RENT_INTERRUPTABLE = (
    "mutation RunctlRentInterruptable($input: PodRentInterruptableInput!) {"
    " podRentInterruptable(input: $input) { ...RunctlPod } }" + _POD_FIELDS
)
STOP_POD = "mutation RunctlStopPod($podId: String!) { podStop(input: {podId: $podId}) { ...RunctlPod } }" + (
    _POD_FIELDS
)
RESUME_POD = (
    "mutation RunctlResumePod($podId: String!, $gpuCount: Int!) {"
    " podResume(input: {podId: $podId, gpuCount: $gpuCount}) { ...RunctlPod } }" + _POD_FIELDS
)
BID_RESUME_POD = (
    "mutation RunctlBidResumePod($podId: String!, $bidPerGpu: Float!, $gpuCount: Int!) {"
    " podBidResume(input: {podId: $podId, bidPerGpu: $bidPerGpu, gpuCount: $gpuCount}) { ...RunctlPod } }"
    + _POD_FIELDS
)
TERMINATE_POD = "mutation RunctlTerminatePod($podId: String!) { podTerminate(input: {podId: $podId}) }"


def pod_name(resource_id: str, label: str | None = None) -> str:
    """The name that ties a pod to its ledger row: ``runctl-<resource id>[-<label>]``."""
    clean = _LABEL_RE.sub("-", label or "").strip("-")[:MAX_LABEL]
    return f"{POD_NAME_PREFIX}{resource_id}" + (f"-{clean}" if clean else "")


def resource_id_from_pod_name(name: str | None) -> str | None:
    """The ledger resource id in a runctl pod name, or None for a pod runctl did not name."""
    match = _NAME_RE.match(name or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class Pod:
    """A pod as RunPod reports it (``status`` is RunPod's ``desiredStatus``, e.g. ``RUNNING``)."""

    id: str
    name: str
    status: str
    cost_per_hr: float | None
    gpu_count: int | None
    gpu: str | None
    image: str | None
    container_disk_gb: int | None
    volume_gb: int | None
    uptime_s: int | None
    machine_id: str | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Pod:
        runtime = data.get("runtime") or {}
        machine = data.get("machine") or {}
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            status=str(data.get("desiredStatus") or "UNKNOWN"),
            cost_per_hr=_float(data.get("costPerHr")),
            gpu_count=data.get("gpuCount"),
            gpu=machine.get("gpuDisplayName"),
            image=data.get("imageName"),
            container_disk_gb=_int(data.get("containerDiskInGb")),
            volume_gb=_int(data.get("volumeInGb")),
            uptime_s=runtime.get("uptimeInSeconds"),
            machine_id=data.get("machineId"),
        )

    @property
    def state(self) -> str:
        """The ledger's name for the status (lower case: ``running``, ``exited``, …)."""
        return self.status.lower()

    @property
    def is_gone(self) -> bool:
        return self.status in GONE_STATUSES

    @property
    def resource_id(self) -> str | None:
        return resource_id_from_pod_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state, "resource_id": self.resource_id}


@dataclass(frozen=True)
class GpuType:
    """A GPU type with its prices per GPU-hour (None where RunPod does not offer it)."""

    id: str
    display_name: str
    memory_gb: int | None
    secure_cloud: bool
    community_cloud: bool
    secure_price: float | None
    community_price: float | None
    secure_spot_price: float | None
    community_spot_price: float | None
    minimum_bid_price: float | None
    uninterruptable_price: float | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> GpuType:
        lowest = data.get("lowestPrice") or {}
        return cls(
            id=str(data["id"]),
            display_name=str(data.get("displayName") or data["id"]),
            memory_gb=data.get("memoryInGb"),
            secure_cloud=bool(data.get("secureCloud", True)),
            community_cloud=bool(data.get("communityCloud", True)),
            secure_price=_price(data.get("securePrice")),
            community_price=_price(data.get("communityPrice")),
            secure_spot_price=_price(data.get("secureSpotPrice")),
            community_spot_price=_price(data.get("communitySpotPrice")),
            minimum_bid_price=_price(lowest.get("minimumBidPrice")),
            uninterruptable_price=_price(lowest.get("uninterruptablePrice")),
        )

    def price(self, cloud: str, *, spot: bool) -> float | None:
        """Per-GPU hourly price in ``cloud`` (``SECURE``/``COMMUNITY``), or None if not offered."""
        if cloud == "SECURE":
            offered, on_demand, interruptible = self.secure_cloud, self.secure_price, self.secure_spot_price
        else:
            offered, on_demand, interruptible = (
                self.community_cloud,
                self.community_price,
                self.community_spot_price,
            )
        if not offered:
            return None
        return interruptible if spot else on_demand

    @property
    def lowest_price(self) -> float | None:
        prices = [p for p in (self.secure_price, self.community_price) if p is not None]
        return min(prices) if prices else self.uninterruptable_price

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lowest_price": self.lowest_price}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _price(value: Any) -> float | None:
    """RunPod reports "not offered" as null or 0."""
    return float(value) if value else None


class RunpodAPI:
    """The RunPod operations runctl uses, over one :class:`GraphQLClient`."""

    def __init__(self, client: GraphQLClient) -> None:
        self.client = client

    def list_pods(self) -> list[Pod]:
        data = self.client.execute(LIST_PODS, operation="RunctlListPods")
        pods = (data.get("myself") or {}).get("pods") or []
        return [Pod.from_api(p) for p in pods if p]

    def get_pod(self, pod_id: str) -> Pod | None:
        """The pod, or None if RunPod does not know it (or only as terminated)."""
        try:
            data = self.client.execute(
                GET_POD, {"podId": pod_id}, operation="RunctlGetPod", resource_id=pod_id
            )
        except NotFoundError:
            return None
        pod = Pod.from_api(data["pod"]) if data.get("pod") else None
        return None if pod is None or pod.is_gone else pod

    def find_pod_by_name(self, name: str) -> Pod | None:
        matches = [p for p in self.list_pods() if p.name == name and not p.is_gone]
        return matches[0] if matches else None

    def gpu_types(self, gpu_count: int = 1) -> list[GpuType]:
        data = self.client.execute(GPU_TYPES, {"gpuCount": gpu_count}, operation="RunctlGpuTypes")
        return [GpuType.from_api(g) for g in data.get("gpuTypes") or [] if g]

    def deploy(self, pod_input: dict[str, Any], *, bid_per_gpu: float | None = None) -> Pod:
        """Create one pod (interruptible when ``bid_per_gpu`` is given); never creates two.

        When an answer is lost (5xx, timeout), the next attempt first looks for a pod with this
        ``name``, and sends the create again only if there is none.
        """
        name = pod_input["name"]
        if bid_per_gpu is None:
            document, operation, field = DEPLOY_ON_DEMAND, "RunctlDeployOnDemand", "podFindAndDeployOnDemand"
            variables = {"input": pod_input}
        else:
            document, operation, field = RENT_INTERRUPTABLE, "RunctlRentInterruptable", "podRentInterruptable"
            variables = {"input": {**pod_input, "bidPerGpu": bid_per_gpu}}
        maybe_created = False

        def attempt() -> Pod:
            nonlocal maybe_created
            if maybe_created and (found := self.find_pod_by_name(name)) is not None:
                return found
            try:
                data = self.client.execute(document, variables, operation=operation, idempotent=False)
            except AmbiguousRequestError as exc:
                maybe_created = True
                raise ThrottledError(
                    str(exc), hint=exc.hint, operation=operation, provider="runpod"
                ) from None
            if not data.get(field):
                raise CloudProviderError(
                    f"RunPod {operation} answered without a pod",
                    provider="runpod",
                    operation=operation,
                    hint="look for it with 'runctl runpod list'",
                )
            return Pod.from_api(data[field])

        return self.client.retry.call(attempt, operation=f"RunPod {operation}")

    def stop_pod(self, pod_id: str) -> Pod:
        data = self.client.execute(STOP_POD, {"podId": pod_id}, operation="RunctlStopPod", resource_id=pod_id)
        return self._pod_or_missing(data.get("podStop"), pod_id, "RunctlStopPod")

    def resume_pod(self, pod_id: str, *, gpu_count: int, bid_per_gpu: float | None = None) -> Pod:
        """Start a stopped pod again: ``podBidResume`` for an interruptible one, else ``podResume``."""
        if bid_per_gpu is None:
            operation, field = "RunctlResumePod", "podResume"
            data = self.client.execute(
                RESUME_POD, {"podId": pod_id, "gpuCount": gpu_count}, operation=operation, resource_id=pod_id
            )
        else:
            operation, field = "RunctlBidResumePod", "podBidResume"
            data = self.client.execute(
                BID_RESUME_POD,
                {"podId": pod_id, "bidPerGpu": bid_per_gpu, "gpuCount": gpu_count},
                operation=operation,
                resource_id=pod_id,
            )
        return self._pod_or_missing(data.get(field), pod_id, operation)

    def terminate_pod(self, pod_id: str) -> None:
        """Send ``podTerminate``; a pod RunPod no longer knows counts as terminated."""
        try:
            self.client.execute(
                TERMINATE_POD, {"podId": pod_id}, operation="RunctlTerminatePod", resource_id=pod_id
            )
        except NotFoundError:
            return

    @staticmethod
    def _pod_or_missing(data: dict[str, Any] | None, pod_id: str, operation: str) -> Pod:
        if not data:
            raise NotFoundError(
                f"RunPod {operation}: no pod {pod_id}",
                operation=operation,
                resource_id=pod_id,
                hint="check the pod id ('runctl runpod list')",
            )
        return Pod.from_api(data)
