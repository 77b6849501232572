"""Rates: the shipped catalogue (dated, sourced), spot quotes believed only when plausible."""

from __future__ import annotations

import re
import time

import pytest

from runctl.providers.aws import pricing
from runctl.providers.aws.context import AwsContext
from tests.support.aws import FAST_API

NOW = time.time()
ON_DEMAND = pricing.on_demand("g5.xlarge", "us-east-1")


def test_every_catalogue_entry_is_dated_and_sourced():
    catalogue = pricing.catalogue()
    sections = [catalogue["ec2_on_demand_usd_per_hour"], catalogue["ebs_usd_per_gb_month"]]
    entries = [e for section in sections for region in section.values() for e in region.values()]
    assert len(entries) > 50
    for entry in entries:
        assert entry["price"] > 0
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["as_of"])
        assert entry["source"].startswith("https://")


def test_on_demand_known_and_unknown():
    assert ON_DEMAND.usd_per_hour == pytest.approx(1.006) and ON_DEMAND.as_of
    unknown = pricing.on_demand("g5.xlarge", "ap-south-2")
    assert unknown.usd_per_hour is None and "no catalogue price" in (unknown.note or "")


def test_ebs_rate_is_prorated_per_hour():
    assert pricing.ebs("gp3", 730, "us-east-1").usd_per_hour == pytest.approx(0.08 * 730 / 730)
    assert pricing.ebs("gp3", 100, "us-east-1").usd_per_hour == pytest.approx(0.08 * 100 / 730, rel=1e-4)
    assert pricing.ebs("gp3", 100, "mars-1").usd_per_hour is None


def test_a_plausible_recent_spot_quote_is_used():
    quote = pricing.SpotQuote("us-east-1a", 0.42, NOW - 3600)
    price = pricing.spot(quote, ON_DEMAND, now=NOW)
    assert price.usd_per_hour == 0.42 and price.source == "spot-price-history"


@pytest.mark.parametrize(
    ("quote", "reason"),
    [
        (pricing.SpotQuote("us-east-1a", 0.00001, NOW - 3600), "implausible"),
        (pricing.SpotQuote("us-east-1a", 0.01, NOW - 3600), "implausible against on-demand"),
        (pricing.SpotQuote("us-east-1a", 5.0, NOW - 3600), "implausible against on-demand"),
        (pricing.SpotQuote("us-east-1a", 0.42, NOW - 40 * 86400), "older than 30 days"),
        (None, "no spot price"),
    ],
)
def test_unbelievable_spot_quotes_fall_back_to_the_on_demand_bound(quote, reason):
    price = pricing.spot(quote, ON_DEMAND, now=NOW)
    assert price.usd_per_hour == pytest.approx(1.006) and price.source == "upper-bound"
    assert reason in (price.note or "") and "upper bound" in (price.note or "")


def test_max_price_lowers_the_bound_and_unknown_stays_unknown():
    assert pricing.spot(None, ON_DEMAND, max_price=0.3, now=NOW).usd_per_hour == 0.3
    unknown = pricing.spot(None, pricing.on_demand("g5.xlarge", "ap-south-2"), now=NOW)
    assert unknown.usd_per_hour is None and "unknown" in (unknown.note or "")


def test_moto_spot_history_is_seen_as_stale(aws):
    """moto answers 0.00001 dated 2006 for every zone: read, then not believed."""
    quotes = pricing.spot_quotes(AwsContext(region="us-east-1", api=FAST_API), "g5.xlarge")
    assert "us-east-1a" in quotes
    price = pricing.spot(quotes["us-east-1a"], ON_DEMAND)
    assert price.source == "upper-bound" and "2006" in (price.note or "")
