"""Price catalogues: dated files shipped in the package, overlaid by prices refreshed live.

* **Shipped** (``runctl/data/``): ``aws_ec2_prices.json`` (EC2 on-demand $/h, EBS $/GB-month and
  the gp3/io1/io2 IOPS and throughput extras per region) and ``runpod_prices.json`` (GPU $/GPU-h
  per cloud, secure and community). Every entry is ``{"price", "as_of", "source"}``: where the
  figure came from and the day it was true. ``scripts/regen_prices.py`` rewrites both files from
  the providers' APIs (maintainers, before a release).
* **Refreshed** (``runctl cost prices --refresh``): the same shape, written to
  ``<state dir>/prices-cache.json`` with the day the API answered. A cached entry replaces the
  shipped one when it is at least as recent, so the prices runctl uses (estimates, the rate of a
  new resource) are the newest it has seen.
* **Stale**: an entry older than ``[cost] price_stale_days`` (30 by default) is still used — an old
  price beats none — but every view of it says how old it is.

A catalogue is four levels deep: ``section → group → item → entry``; the group is the AWS region
or the RunPod cloud (``secure``/``community``), the item the instance type, volume type or GPU.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from runctl.core.paths import ensure_state_dir, state_dir, write_private

log = logging.getLogger("runctl.prices")

#: Shipped catalogues are ``data/<provider>_…prices.json``: the provider is the name's first word.
CATALOGUE_SUFFIX = "prices.json"
CACHE_FILE = "prices-cache.json"
#: Unit of each section's prices (what ``runctl cost prices`` prints).
UNITS = {
    "ec2_on_demand_usd_per_hour": "$/h",
    "ebs_usd_per_gb_month": "$/GB-month",
    "ebs_extras_usd_per_month": "$/unit-month",
    "gpu_usd_per_gpu_hour": "$/GPU-h",
}


@dataclass(frozen=True)
class Rate:
    """An hourly rate and where it came from (a catalogue entry, the cloud's own answer, an
    upper bound). ``usd_per_hour`` None = unknown; ``note`` says why or what it stands for."""

    usd_per_hour: float | None
    source: str = "unknown"
    as_of: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PriceEntry:
    """One catalogue price, with where it came from and when it was true."""

    provider: str
    section: str
    group: str
    item: str
    usd: float
    as_of: str
    source: str
    origin: str  # "catalogue" (shipped) or "refreshed" (the state dir's cache)

    @property
    def unit(self) -> str:
        return UNITS.get(self.section, "$")

    def age_days(self, now: float | None = None) -> float:
        """Days since ``as_of`` (0 for today)."""
        return age_days(self.as_of, now)

    def is_stale(self, stale_days: int, now: float | None = None) -> bool:
        return self.age_days(now) > stale_days

    def to_dict(self, *, stale_days: int | None = None, now: float | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {**self.__dict__, "unit": self.unit, "age_days": round(self.age_days(now), 1)}
        if stale_days is not None:
            data["stale"] = self.is_stale(stale_days, now)
        return data


def age_days(as_of: str, now: float | None = None) -> float:
    """Days from the date ``as_of`` (``YYYY-MM-DD``) to ``now``."""
    day = datetime.combine(date.fromisoformat(as_of[:10]), datetime.min.time(), tzinfo=UTC)
    return max(0.0, ((time.time() if now is None else now) - day.timestamp()) / 86400)


def today() -> str:
    """Today's date in UTC, the ``as_of`` of a price asked for now."""
    return datetime.now(UTC).date().isoformat()


@lru_cache(maxsize=1)
def catalogue_files() -> dict[str, str]:
    """The shipped catalogue of each provider that has one: provider → file name."""
    names = (f.name for f in resources.files("runctl").joinpath("data").iterdir())
    return {n.split("_", 1)[0]: n for n in sorted(names) if n.endswith(CATALOGUE_SUFFIX)}


@lru_cache(maxsize=4)
def shipped(provider: str) -> dict[str, Any]:
    """The catalogue file shipped for ``provider`` (parsed once)."""
    text = resources.files("runctl").joinpath(f"data/{catalogue_files()[provider]}").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def cache_path() -> Path:
    return state_dir() / CACHE_FILE


def cached() -> dict[str, Any]:
    """The refreshed prices (empty when never refreshed, or when the file is unreadable)."""
    path = cache_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring the price cache %s: %s (run 'runctl cost prices --refresh')", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def lookup(provider: str, section: str, group: str, item: str) -> PriceEntry | None:
    """The newest known price of ``item`` (refreshed beats shipped unless older), or None."""
    found = None
    for origin, catalogue in (("catalogue", shipped(provider)), ("refreshed", cached().get(provider, {}))):
        raw = catalogue.get(section, {}).get(group, {}).get(item)
        if raw is None:
            continue
        entry = _entry(provider, section, group, item, raw, origin)
        if found is None or entry.as_of >= found.as_of:
            found = entry
    return found


def entries(provider: str) -> list[PriceEntry]:
    """Every price known for ``provider`` (shipped overlaid by refreshed), sorted."""
    merged: dict[tuple[str, str, str], PriceEntry] = {}
    for origin, catalogue in (("catalogue", shipped(provider)), ("refreshed", cached().get(provider, {}))):
        for section in UNITS:
            for group, items in catalogue.get(section, {}).items():
                for item, raw in items.items():
                    entry = _entry(provider, section, group, item, raw, origin)
                    known = merged.get((section, group, item))
                    if known is None or entry.as_of >= known.as_of:
                        merged[(section, group, item)] = entry
    return [merged[key] for key in sorted(merged)]


def store(provider: str, section: str, table: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """Merge refreshed prices (``group → item → entry``) into the cache; atomic replace."""
    data = cached()
    target = data.setdefault(provider, {}).setdefault(section, {})
    for group, items in table.items():
        target.setdefault(group, {}).update(items)
    data["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = ensure_state_dir() / CACHE_FILE
    return write_private(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def _entry(
    provider: str, section: str, group: str, item: str, raw: dict[str, Any], origin: str
) -> PriceEntry:
    return PriceEntry(
        provider=provider,
        section=section,
        group=group,
        item=item,
        usd=float(raw["price"]),
        as_of=str(raw["as_of"]),
        source=str(raw["source"]),
        origin=origin,
    )
