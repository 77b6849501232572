"""RunPod GPU prices: the dated catalogue (for estimates without an API key) and its live refresh.

A pod's real rate is the ``costPerHr`` RunPod reports when it is created (recorded in the
ledger, re-read while a job runs); the plan of a launch prices from ``gpuTypes`` live. The
catalogue (:mod:`runctl.core.prices`, ``runpod_prices.json``) holds on-demand USD per GPU-hour by
cloud (``secure``/``community``) and GPU type id, for ``runctl cost estimate --offline`` and
``runctl cost prices``; :func:`refreshed_entries` turns a ``gpuTypes`` answer into fresh entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runctl.core import prices
from runctl.core.errors import ValidationError
from runctl.providers.runpod.api import GpuType

SECTION = "gpu_usd_per_gpu_hour"
CLOUDS = ("secure", "community")
GPU_TYPES_SOURCE = "RunPod GraphQL API (gpuTypes)"


def catalogue_gpu(name: str) -> tuple[str, str]:
    """(GPU type id, display name) of the catalogue GPU called ``name`` (id or display name)."""
    wanted = name.strip().lower()
    for cloud in CLOUDS:
        for gpu_id, raw in prices.shipped("runpod").get(SECTION, {}).get(cloud, {}).items():
            display = str(raw.get("display_name") or gpu_id)
            if wanted in (gpu_id.lower(), display.lower()):
                return gpu_id, display
    for entry in prices.entries("runpod"):
        if entry.item.lower() == wanted:
            return entry.item, entry.item
    known = sorted({e.item for e in prices.entries("runpod")})
    raise ValidationError(
        f"no catalogue price for the RunPod GPU {name!r}",
        hint=f"known GPU types: {', '.join(known)}; or drop --offline to ask RunPod",
    )


def gpu_price(gpu_id: str, cloud: str) -> prices.PriceEntry | None:
    """The catalogue's on-demand price per GPU-hour of ``gpu_id`` in ``cloud``, or None."""
    return prices.lookup("runpod", SECTION, cloud, gpu_id)


def refreshed_entries(types: Iterable[GpuType]) -> dict[str, dict[str, dict[str, Any]]]:
    """Catalogue entries (``cloud → gpu id → entry``, dated today) from a ``gpuTypes`` answer."""
    table: dict[str, dict[str, dict[str, Any]]] = {cloud: {} for cloud in CLOUDS}
    for gpu in types:
        for cloud, price in (("secure", gpu.secure_price), ("community", gpu.community_price)):
            if price:
                table[cloud][gpu.id] = {
                    "price": price,
                    "as_of": prices.today(),
                    "source": GPU_TYPES_SOURCE,
                    "display_name": gpu.display_name,
                }
    return table
