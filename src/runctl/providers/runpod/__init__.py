"""RunPod: GPU pods through RunPod's GraphQL API (httpx; not the ``runpod`` SDK).

:mod:`.graphql` is the transport and error classification, :mod:`.api` the operations and
result types, :mod:`.provider` the :class:`RunpodProvider` that makes pods ledger resources.
"""

from runctl.providers.runpod.api import (
    POD_NAME_PREFIX,
    GpuType,
    Pod,
    RunpodAPI,
    pod_name,
    resource_id_from_pod_name,
)
from runctl.providers.runpod.graphql import GraphQLClient, resolve_api_key
from runctl.providers.runpod.provider import RunpodProvider, pod_start_command

__all__ = [
    "POD_NAME_PREFIX",
    "GpuType",
    "GraphQLClient",
    "Pod",
    "RunpodAPI",
    "RunpodProvider",
    "pod_name",
    "pod_start_command",
    "resolve_api_key",
    "resource_id_from_pod_name",
]
