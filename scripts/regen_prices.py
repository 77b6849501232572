"""Regenerate runctl's shipped price catalogues from the providers' APIs (maintainers, before a
release). Users refresh their own copy with ``runctl cost prices --refresh`` instead.

    python scripts/regen_prices.py [--regions us-east-1,us-west-2] [--types g5.xlarge,...]
                                   [--no-aws] [--no-runpod] [--dry-run]

* **AWS** (credentials with ``pricing:GetProducts``; the Price List API answers in us-east-1):
  for every region asked (default: the catalogue's regions) and every instance type already in
  the catalogue (plus ``--types``), the Linux on-demand price through
  :func:`runctl.providers.aws.pricing.fetch_on_demand` (exact-match filters: instance type,
  region code, Linux, shared tenancy, no pre-installed software, capacity status ``Used``;
  the ``OnDemand`` term). EBS storage $/GB-month per volume type (product family ``Storage``),
  snapshots (``Storage Snapshot``, usage type ``EBS:SnapshotUsage``), and the provisioned IOPS
  (``System Operation``) and gp3 throughput (``Provisioned Throughput``) extras.
* **RunPod** (``RUNPOD_API_KEY``): ``gpuTypes`` on-demand prices per GPU-hour, secure and community.

Every price written carries ``as_of`` (today) and ``source`` (the API). An item the API did not
answer keeps its old entry (and date), and the script lists it: a stale entry is visible, a
missing one would silently make a cost unknown. ``--dry-run`` prints the changes only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "runctl" / "data"
EBS_SOURCE = "AWS Price List API (pricing:GetProducts, AmazonEC2, EBS)"


def _products(client: Any, filters: dict[str, str]) -> list[Any]:
    """Every OnDemand price of the products matching ``filters`` (all pages)."""
    from runctl.clients import aws
    from runctl.providers.aws import pricing

    documents: list[str] = []
    token = None
    while True:
        page = aws.call(
            client.get_products,
            operation=f"price list {filters}",
            ServiceCode="AmazonEC2",
            FormatVersion="aws_v1",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=100,
            **({"NextToken": token} if token else {}),
        )
        documents.extend(page.get("PriceList") or [])
        token = page.get("NextToken")
        if not token:
            return pricing.parse_products(documents)


def _entry(price: float) -> dict[str, Any]:
    from runctl.core import prices

    return {"price": price, "as_of": prices.today(), "source": EBS_SOURCE}


def ebs_prices(region: str, volume_types: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(storage $/GB-month by volume type and ``snapshot``, extras $/unit-month) for ``region``."""
    from runctl.clients import aws
    from runctl.providers.aws import pricing

    client = aws.client("pricing", pricing.PRICE_LIST_REGION)
    storage: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for volume_type in volume_types:
        found = _products(
            client, {"regionCode": region, "productFamily": "Storage", "volumeApiName": volume_type}
        )
        monthly = [p.usd for p in found if p.unit.lower() == "gb-mo" and p.usd > 0]
        if monthly:
            storage[volume_type] = _entry(monthly[0])
        if volume_type in ("gp3", "io1", "io2"):
            iops = _products(
                client,
                {"regionCode": region, "productFamily": "System Operation", "volumeApiName": volume_type},
            )
            for p in iops:
                if "iops" not in p.unit.lower() or p.usd <= 0:
                    continue
                usage = p.attributes.get("usagetype", "")
                tier = "_tier3" if "tier3" in usage else "_tier2" if "tier2" in usage else ""
                extras.setdefault(f"{volume_type}_iops{tier}", _entry(p.usd))
        if volume_type == "gp3":
            throughput = _products(
                client,
                {"regionCode": region, "productFamily": "Provisioned Throughput", "volumeApiName": "gp3"},
            )
            for p in throughput:
                unit = p.unit.lower()
                per_mib = (
                    p.usd / 1024 if unit.startswith("gibps") else p.usd if unit.startswith("mibps") else None
                )
                if per_mib:
                    extras.setdefault("gp3_throughput", _entry(round(per_mib, 6)))
    snapshots = _products(client, {"regionCode": region, "productFamily": "Storage Snapshot"})
    for p in snapshots:
        if p.attributes.get("usagetype", "").endswith("EBS:SnapshotUsage") and p.unit.lower() == "gb-mo":
            storage["snapshot"] = _entry(p.usd)
    return storage, extras


def regen_aws(catalogue: dict[str, Any], regions: list[str], extra_types: list[str]) -> list[str]:
    """Update ``catalogue`` in place; returns what could not be refreshed."""
    from runctl.providers.aws import pricing

    kept: list[str] = []
    for region in regions:
        on_demand = catalogue.setdefault(pricing.ON_DEMAND, {}).setdefault(region, {})
        types = sorted({*on_demand, *extra_types})
        found = pricing.fetch_on_demand(types, region)
        for instance_type in types:
            if instance_type in found:
                on_demand[instance_type] = {k: v for k, v in found[instance_type].items() if k != "effective"}
            else:
                kept.append(f"aws {region} {instance_type}")
        volumes = catalogue.setdefault(pricing.EBS_STORAGE, {}).setdefault(region, {})
        storage, extras = ebs_prices(region, sorted(set(volumes) - {"snapshot"} or {"gp3"}))
        kept += [f"aws {region} ebs {k}" for k in volumes if k not in storage]
        volumes.update(storage)
        known_extras = catalogue.setdefault(pricing.EBS_EXTRAS, {}).setdefault(region, {})
        kept += [f"aws {region} {k}" for k in known_extras if k not in extras]
        known_extras.update(extras)
    return kept


def regen_runpod(catalogue: dict[str, Any]) -> list[str]:
    from runctl.core.config import RunpodConfig
    from runctl.providers.runpod import pricing
    from runctl.providers.runpod.api import RunpodAPI
    from runctl.providers.runpod.graphql import GraphQLClient, resolve_api_key

    config = RunpodConfig()
    fresh = pricing.refreshed_entries(
        RunpodAPI(GraphQLClient(config.api_url, resolve_api_key(config))).gpu_types(1)
    )
    table = catalogue.setdefault(pricing.SECTION, {})
    kept = [
        f"runpod {cloud} {gpu}" for cloud, items in table.items() for gpu in items if gpu not in fresh[cloud]
    ]
    for cloud, items in fresh.items():
        table.setdefault(cloud, {}).update(items)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", help="comma-separated AWS regions (default: the catalogue's)")
    parser.add_argument("--types", default="", help="comma-separated EC2 types to add")
    parser.add_argument("--no-aws", action="store_true")
    parser.add_argument("--no-runpod", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the changes; write nothing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from runctl.core import prices

    kept: list[str] = []
    for provider, skip in (("aws", args.no_aws), ("runpod", args.no_runpod)):
        if skip:
            continue
        path = DATA / prices.catalogue_files()[provider]
        before = json.loads(path.read_text())
        after = json.loads(json.dumps(before))
        if provider == "aws":
            regions = (
                args.regions.split(",") if args.regions else sorted(before["ec2_on_demand_usd_per_hour"])
            )
            kept += regen_aws(after, regions, [t for t in args.types.split(",") if t])
        else:
            kept += regen_runpod(after)
        for change in _changes(before, after):
            print(f"{provider}: {change}")
        if not args.dry_run:
            path.write_text(json.dumps(after, indent=1, sort_keys=True) + "\n")
    for item in kept:
        print(f"kept (not answered by the API): {item}", file=sys.stderr)
    return 0


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changes = []
    for section, groups in after.items():
        if not isinstance(groups, dict):
            continue
        for group, items in groups.items():
            if not isinstance(items, dict):
                continue
            for item, entry in items.items():
                if not isinstance(entry, dict) or "price" not in entry:
                    continue
                old = before.get(section, {}).get(group, {}).get(item)
                if old is None or old.get("price") != entry["price"]:
                    was = "new" if old is None else f"was {old['price']} of {old['as_of']}"
                    changes.append(f"{section} {group} {item}: {entry['price']} ({was})")
    return changes


if __name__ == "__main__":
    raise SystemExit(main())
