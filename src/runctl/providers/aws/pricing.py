"""What an AWS resource costs per hour: a dated catalogue for on-demand and EBS, live spot prices,
and the AWS Rate List API behind ``runctl cost prices --refresh`` and ``scripts/regen_prices.py``.

* **On-demand** rates come from the catalogue (:mod:`runctl.core.prices`: the dated file shipped in
  the package, overlaid by prices refreshed live); each entry has its ``source`` and ``as_of``
  date, and every :class:`Rate` carries them, so a report can say where a figure came from and
  how old it is. A type or region not in the catalogue has an unknown rate (``usd_per_hour``
  None) and says so; the ledger then records no rate rather than a guess.
* **Spot** rates come from ``describe_spot_price_history`` for the zone actually used. A quote is
  treated as *unknown* when it is implausible — below $0.001/h, below 5 % of the on-demand price
  (spot discounts stop near 90 %) or above twice it — or stale (older than ``cost.price_stale_days``,
  30 by default). moto answers every query with "0.00001" dated 2006, which fails both checks.
  An unknown spot rate falls back to the catalogue's on-demand price — an upper bound, since a
  spot instance never bills above on-demand (lowered to ``--max-price`` when that is smaller) —
  and the price's ``note`` says so. While a job runs, the controller re-reads the quote
  (:meth:`AwsProvider.refresh_rate`) and splits the usage interval at the new rate.
* **EBS** volumes: $/GB-month × size ÷ 730 hours, plus the provisioned-performance extras: gp3
  IOPS above 3000 and throughput above 125 MB/s; io1 IOPS; io2 IOPS in three tiers (up to
  32 000, 32 001–64 000, above 64 000). Snapshots: the snapshot $/GB-month × the volume size, an
  upper bound (a snapshot stores only the blocks in use).
* **Rate List API** (``pricing:GetProducts``, answered in us-east-1): exact-match filters on
  instance type, region code, Linux, shared tenancy, no pre-installed software and capacity status
  ``Used``; the ``OnDemand`` term's hourly USD price is the rate. :func:`parse_products` reads the
  answer (a list of JSON documents, one per product); moto has no Rate List backend, so the
  tests feed it a recorded answer.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runctl.core import prices
from runctl.core.errors import ValidationError
from runctl.providers.aws.context import AwsContext
from runctl.providers.base import Rate

if TYPE_CHECKING:
    from runctl.core.retry import RetryPolicy

HOURS_PER_MONTH = 730.0
SPOT_MIN_USD_PER_HOUR = 0.001
SPOT_MIN_FRACTION = 0.05
SPOT_MAX_FRACTION = 2.0
DEFAULT_STALE_DAYS = 30
ON_DEMAND = "ec2_on_demand_usd_per_hour"
EBS_STORAGE = "ebs_usd_per_gb_month"
EBS_EXTRAS = "ebs_extras_usd_per_month"
GP3_BASELINE_IOPS = 3000
GP3_BASELINE_THROUGHPUT = 125
#: io2 provisioned IOPS are priced in tiers: (upper bound of the tier, catalogue item).
IO2_TIERS = ((32000, "io2_iops"), (64000, "io2_iops_tier2"), (math.inf, "io2_iops_tier3"))
#: The Rate List API is served from us-east-1 (also ap-south-1, eu-central-1).
PRICE_LIST_REGION = "us-east-1"
PRICE_LIST_SOURCE = "AWS Rate List API (pricing:GetProducts, AmazonEC2, OnDemand)"


@dataclass(frozen=True)
class SpotQuote:
    """One spot price answer for one zone."""

    zone: str
    usd_per_hour: float
    timestamp: float


def catalogue() -> dict[str, Any]:
    """The shipped AWS price catalogue (parsed once)."""
    return prices.shipped("aws")


def on_demand(instance_type: str, region: str) -> Rate:
    """The catalogue's on-demand rate for ``instance_type`` in ``region`` (or unknown)."""
    entry = prices.lookup("aws", ON_DEMAND, region, instance_type)
    if entry is None:
        return Rate(
            None,
            "catalogue",
            note=f"no catalogue price for {instance_type} in {region}; its cost will show as unknown",
        )
    return Rate(entry.usd, entry.origin, entry.as_of)


def ebs(
    volume_type: str,
    size_gb: int,
    region: str,
    *,
    iops: int | None = None,
    throughput: int | None = None,
) -> Rate:
    """The rate per hour of ``size_gb`` of EBS ``volume_type`` (or ``snapshot``), with the
    provisioned IOPS / throughput extras of gp3, io1 and io2 (see the module docstring)."""
    storage = prices.lookup("aws", EBS_STORAGE, region, volume_type)
    if storage is None:
        return Rate(None, "catalogue", note=f"no catalogue price for EBS {volume_type} in {region}")
    monthly = storage.usd * size_gb
    parts = [f"{storage.usd} $/GB-month × {size_gb} GB"]
    dates = [storage.as_of]
    for item, units in ebs_extras(volume_type, iops, throughput):
        extra = prices.lookup("aws", EBS_EXTRAS, region, item)
        if extra is None:
            return Rate(None, "catalogue", note=f"no catalogue price for EBS {item} in {region}")
        monthly += extra.usd * units
        parts.append(f"{extra.usd} $/month × {units} ({item})")
        dates.append(extra.as_of)
    return Rate(monthly / HOURS_PER_MONTH, storage.origin, min(dates), " + ".join(parts))


def ebs_extras(volume_type: str, iops: int | None, throughput: int | None) -> list[tuple[str, int]]:
    """The billed performance extras of a volume: (catalogue item, units per month)."""
    extras: list[tuple[str, int]] = []
    if volume_type == "gp3":
        if iops and iops > GP3_BASELINE_IOPS:
            extras.append(("gp3_iops", iops - GP3_BASELINE_IOPS))
        if throughput and throughput > GP3_BASELINE_THROUGHPUT:
            extras.append(("gp3_throughput", throughput - GP3_BASELINE_THROUGHPUT))
    elif volume_type == "io1" and iops:
        extras.append(("io1_iops", iops))
    elif volume_type == "io2" and iops:
        below = 0
        for bound, item in IO2_TIERS:
            units = int(min(iops, bound) - below)
            if units > 0:
                extras.append((item, units))
            below = int(min(bound, iops))
    return extras


# -- the Rate List API ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductPrice:
    """One OnDemand price dimension of one product in a ``GetProducts`` answer."""

    sku: str
    attributes: dict[str, str]
    usd: float
    unit: str
    effective: str | None
    description: str


def instance_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The exact-match filters that select one Linux on-demand instance product."""
    exact = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in exact.items()]


def parse_products(price_list: Iterable[str | dict[str, Any]]) -> list[ProductPrice]:
    """Every OnDemand USD price in a ``GetProducts`` ``PriceList`` (JSON strings or dicts)."""
    found: list[ProductPrice] = []
    for n, document in enumerate(price_list):
        try:
            data = json.loads(document) if isinstance(document, str) else document
            product = data.get("product") or {}
            attributes = {str(k): str(v) for k, v in (product.get("attributes") or {}).items()}
            for term in ((data.get("terms") or {}).get("OnDemand") or {}).values():
                for dimension in (term.get("priceDimensions") or {}).values():
                    usd = (dimension.get("pricePerUnit") or {}).get("USD")
                    if usd is None:
                        continue
                    found.append(
                        ProductPrice(
                            sku=str(product.get("sku") or term.get("sku") or ""),
                            attributes=attributes,
                            usd=float(usd),
                            unit=str(dimension.get("unit") or ""),
                            effective=term.get("effectiveDate"),
                            description=str(dimension.get("description") or ""),
                        )
                    )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValidationError(
                f"entry {n} of the Rate List answer is not a product document: {exc}",
                hint="the AWS Rate List API changed its format, or the answer was cut short",
            ) from None
    return found


def hourly_on_demand(
    products: Iterable[ProductPrice], instance_type: str, region: str
) -> ProductPrice | None:
    """The Linux on-demand hourly price of ``instance_type`` in ``region`` among ``products``.

    Several matches with different prices (a filter AWS stopped honouring) are an error: a wrong
    price is worse than none.
    """
    hourly = [
        p
        for p in products
        if p.attributes.get("instanceType") == instance_type
        and p.attributes.get("regionCode", region) == region
        and p.unit.lower() in ("hrs", "hours")
        and p.usd > 0
    ]
    plain = [p for p in hourly if p.attributes.get("operation", "RunInstances") == "RunInstances"]
    choices = {p.usd for p in plain}
    if len(choices) > 1:
        raise ValidationError(
            f"the Rate List API returned {len(choices)} different on-demand prices for "
            f"{instance_type} in {region}: {sorted(choices)}",
            hint="report this: runctl's product filters no longer select a single product",
        )
    return plain[0] if plain else None


def fetch_on_demand(
    instance_types: Iterable[str], region: str, *, policy: RetryPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Ask the Rate List API for the on-demand rate of each type in ``region``: catalogue
    entries (``price``, ``as_of`` today, ``source``, ``effective``); types without one are left out."""
    from runctl.clients import aws

    client = aws.client("pricing", PRICE_LIST_REGION)
    found: dict[str, dict[str, Any]] = {}
    for instance_type in instance_types:
        documents: list[str] = []
        token: str | None = None
        while True:
            page = aws.call(
                client.get_products,
                operation=f"price list of {instance_type} in {region}",
                policy=policy,
                ServiceCode="AmazonEC2",
                FormatVersion="aws_v1",
                Filters=instance_filters(instance_type, region),
                MaxResults=100,
                **({"NextToken": token} if token else {}),
            )
            documents.extend(page.get("PriceList") or [])
            token = page.get("NextToken")
            if not token:
                break
        best = hourly_on_demand(parse_products(documents), instance_type, region)
        if best is not None:
            found[instance_type] = {
                "price": best.usd,
                "as_of": prices.today(),
                "source": PRICE_LIST_SOURCE,
                "effective": best.effective,
            }
    return found


def spot_quotes(ctx: AwsContext, instance_type: str) -> dict[str, SpotQuote]:
    """The current Linux spot price of ``instance_type`` in each zone of the region."""
    from datetime import UTC

    rows = ctx.call(
        "describe_spot_price_history",
        operation=f"spot price of {instance_type}",
        InstanceTypes=[instance_type],
        ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
        StartTime=datetime.now(UTC),
    )["SpotPriceHistory"]
    quotes: dict[str, SpotQuote] = {}
    for row in rows:
        ts = row["Timestamp"]
        quote = SpotQuote(row["AvailabilityZone"], float(row["SpotPrice"]), ts.timestamp())
        known = quotes.get(quote.zone)
        if known is None or quote.timestamp > known.timestamp:
            quotes[quote.zone] = quote
    return quotes


def spot(
    quote: SpotQuote | None,
    fallback: Rate,
    *,
    max_price: float | None = None,
    stale_days: int = DEFAULT_STALE_DAYS,
    now: float | None = None,
) -> Rate:
    """The rate to record for a spot instance: the quote if believable, else the upper bound."""
    now = time.time() if now is None else now
    problem = _spot_problem(quote, fallback.usd_per_hour, stale_days, now)
    if problem is None and quote is not None:
        as_of = time.strftime("%Y-%m-%d", time.gmtime(quote.timestamp))
        return Rate(quote.usd_per_hour, "spot-price-history", as_of, f"spot price in {quote.zone}")
    bound = fallback.usd_per_hour
    if max_price is not None and (bound is None or max_price < bound):
        bound, what = max_price, f"your --max-price ${max_price}/h"
    else:
        what = "the on-demand catalogue price" + (f" ${bound}/h" if bound is not None else "")
    note = f"spot price unknown ({problem}); recording {what} as an upper bound"
    if bound is None:
        note = f"spot price unknown ({problem}) and no catalogue price; cost will show as unknown"
    return Rate(bound, "upper-bound", fallback.as_of, note)


def _spot_problem(
    quote: SpotQuote | None, on_demand_rate: float | None, stale_days: int, now: float
) -> str | None:
    if quote is None:
        return "AWS returned no spot price for this zone"
    shown = f"${quote.usd_per_hour:g}/h dated {time.strftime('%Y-%m-%d', time.gmtime(quote.timestamp))}"
    if now - quote.timestamp > stale_days * 86400:
        return f"AWS reported {shown}, older than {stale_days} days"
    if quote.usd_per_hour < SPOT_MIN_USD_PER_HOUR:
        return f"AWS reported an implausible {shown}"
    if on_demand_rate is not None and not (
        SPOT_MIN_FRACTION * on_demand_rate <= quote.usd_per_hour <= SPOT_MAX_FRACTION * on_demand_rate
    ):
        return f"AWS reported {shown}, implausible against on-demand ${on_demand_rate}/h"
    return None
