"""What an AWS resource costs per hour: a dated catalogue for on-demand and EBS, live spot prices.

* **On-demand** rates come from ``runctl/data/aws_ec2_prices.json``, a small catalogue shipped in
  the package; each entry has its ``source`` and ``as_of`` date, and every :class:`Price` carries
  them, so a report can say where a figure came from and how old it is. A type or region not in
  the catalogue has an unknown rate (``usd_per_hour`` None) and says so; the ledger then records
  no rate rather than a guess.
* **Spot** rates come from ``describe_spot_price_history`` for the zone actually used. A quote is
  treated as *unknown* when it is implausible — below $0.001/h, below 5 % of the on-demand price
  (spot discounts stop near 90 %) or above twice it — or stale (older than ``cost.price_stale_days``,
  30 by default). moto answers every query with "0.00001" dated 2006, which fails both checks.
  An unknown spot rate falls back to the catalogue's on-demand price — an upper bound, since a
  spot instance never bills above on-demand (lowered to ``--max-price`` when that is smaller) —
  and the price's ``note`` says so.
* **EBS** volumes: $/GB-month × size ÷ 730 hours. gp3/io2 IOPS and throughput extras and
  snapshot block-level sizes are left to the cost-truth work, which extends this module.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from runctl.providers.aws.context import AwsContext

HOURS_PER_MONTH = 730.0
SPOT_MIN_USD_PER_HOUR = 0.001
SPOT_MIN_FRACTION = 0.05
SPOT_MAX_FRACTION = 2.0
DEFAULT_STALE_DAYS = 30


@dataclass(frozen=True)
class Price:
    """A rate and where it came from. ``usd_per_hour`` None = unknown; ``note`` explains."""

    usd_per_hour: float | None
    source: str
    as_of: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SpotQuote:
    """One spot price answer for one zone."""

    zone: str
    usd_per_hour: float
    timestamp: float


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Any]:
    """The shipped price catalogue (parsed once)."""
    text = resources.files("runctl").joinpath("data/aws_ec2_prices.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def on_demand(instance_type: str, region: str) -> Price:
    """The catalogue's on-demand rate for ``instance_type`` in ``region`` (or unknown)."""
    entry = catalogue()["ec2_on_demand_usd_per_hour"].get(region, {}).get(instance_type)
    if entry is None:
        return Price(
            None,
            "catalogue",
            note=f"no catalogue price for {instance_type} in {region}; its cost will show as unknown",
        )
    return Price(float(entry["price"]), "catalogue", entry["as_of"])


def ebs(volume_type: str, size_gb: int, region: str) -> Price:
    """The catalogue rate of ``size_gb`` of EBS ``volume_type`` (or ``snapshot``) per hour."""
    entry = catalogue()["ebs_usd_per_gb_month"].get(region, {}).get(volume_type)
    if entry is None:
        return Price(None, "catalogue", note=f"no catalogue price for EBS {volume_type} in {region}")
    rate = float(entry["price"]) * size_gb / HOURS_PER_MONTH
    return Price(round(rate, 6), "catalogue", entry["as_of"], f"{entry['price']} $/GB-month × {size_gb} GB")


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
    fallback: Price,
    *,
    max_price: float | None = None,
    stale_days: int = DEFAULT_STALE_DAYS,
    now: float | None = None,
) -> Price:
    """The rate to record for a spot instance: the quote if believable, else the upper bound."""
    now = time.time() if now is None else now
    problem = _spot_problem(quote, fallback.usd_per_hour, stale_days, now)
    if problem is None and quote is not None:
        as_of = time.strftime("%Y-%m-%d", time.gmtime(quote.timestamp))
        return Price(quote.usd_per_hour, "spot-price-history", as_of, f"spot price in {quote.zone}")
    bound = fallback.usd_per_hour
    if max_price is not None and (bound is None or max_price < bound):
        bound, what = max_price, f"your --max-price ${max_price}/h"
    else:
        what = "the on-demand catalogue price" + (f" ${bound}/h" if bound is not None else "")
    note = f"spot price unknown ({problem}); recording {what} as an upper bound"
    if bound is None:
        note = f"spot price unknown ({problem}) and no catalogue price; cost will show as unknown"
    return Price(bound, "upper-bound", fallback.as_of, note)


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
