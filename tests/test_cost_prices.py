"""Price catalogues: dated and sourced, stale ones marked, refreshed live from the AWS Price List
API (a recorded ``GetProducts`` answer served through the fault proxy: moto has no Price List
backend) and RunPod's ``gpuTypes`` (the fake server), EBS extras, and spot rates that move."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from runctl.core import cost, prices
from runctl.core.errors import ValidationError
from runctl.core.ledger import Ledger
from runctl.providers.aws import pricing
from runctl.providers.base import LaunchOptions
from tests.conftest import run_cli
from tests.support.aws import al2023_image, make_provider
from tests.support.fake_runpod import FakeRunpod
from tests.support.fault_proxy import Fault, FaultProxy, Request

RECORDED = Path(__file__).parent / "data" / "pricing_get_products_g5_xlarge_us_east_1.json"


def recorded_answer() -> dict:
    return json.loads(RECORDED.read_text())


# -- the shipped catalogues --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["aws", "runpod"])
def test_every_catalogue_entry_is_dated_sourced_and_positive(provider: str) -> None:
    entries = prices.entries(provider)
    assert len(entries) > (100 if provider == "aws" else 15)
    for entry in entries:
        assert entry.usd > 0 and entry.origin == "catalogue"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.as_of)
        assert entry.source.startswith("https://")
    groups = {e.group for e in entries}
    assert groups >= (
        {"us-east-1", "us-west-2", "us-east-2", "eu-west-1"} if provider == "aws" else {"secure", "community"}
    )


def test_runpod_catalogue_has_both_clouds_for_common_gpus() -> None:
    from runctl.providers.runpod import pricing as runpod_pricing

    assert runpod_pricing.catalogue_gpu("rtx 4090") == ("NVIDIA GeForce RTX 4090", "RTX 4090")
    secure = runpod_pricing.gpu_price("NVIDIA GeForce RTX 4090", "secure")
    community = runpod_pricing.gpu_price("NVIDIA GeForce RTX 4090", "community")
    assert secure and community and community.usd < secure.usd
    with pytest.raises(ValidationError, match="no catalogue price"):
        runpod_pricing.catalogue_gpu("GTX 280")


def test_stale_prices_are_marked_and_warned_about() -> None:
    result = run_cli("cost", "prices", "--provider", "aws", "--type", "g5.xlarge", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    now = time.time()
    assert data["stale_days"] == 30 and data["prices"]
    for row in data["prices"]:
        age = prices.age_days(row["as_of"], now)
        assert row["stale"] is (age > 30) and row["age_days"] == pytest.approx(age, abs=0.2)
    stale = sum(r["stale"] for r in data["prices"])
    assert stale and f"{stale} of {len(data['prices'])} prices are older than" in result.stderr
    assert "--refresh" in result.stderr

    # a threshold beyond every entry's age: nothing stale, no warning
    relaxed = run_cli(
        "cost", "prices", "--provider", "aws", "-o", "json", env={"RUNCTL_COST__PRICE_STALE_DAYS": "36500"}
    )
    assert not any(r["stale"] for r in json.loads(relaxed.stdout)["prices"])
    assert "older than" not in relaxed.stderr
    table = run_cli("cost", "prices", "--type", "g5.xlarge")
    assert "STALE" in table.stdout and "g5.xlarge" in table.stdout


def test_estimate_says_a_catalogue_price_is_stale() -> None:
    result = run_cli(
        "cost", "estimate", "aws", "--offline", "-t", "g5.xlarge", "--region", "us-east-1", "-o", "json"
    )
    data = json.loads(result.stdout)
    assert data["usd_per_hour"] == pytest.approx(1.006)
    assert any("older than [cost] price_stale_days (30)" in n for n in data["notes"])


# -- the AWS Price List API --------------------------------------------------------------------


def test_price_list_parser_reads_the_on_demand_hourly_price() -> None:
    answer = recorded_answer()
    products = pricing.parse_products(answer["PriceList"])
    # the recorded product has one OnDemand and three Reserved dimensions: only OnDemand counts
    assert {p.usd for p in products} == {1.006}
    best = pricing.hourly_on_demand(products, "g5.xlarge", "us-east-1")
    assert best is not None and best.usd == 1.006 and best.unit == "Hrs"
    assert best.effective == "2025-04-01T00:00:00Z" and best.attributes["operatingSystem"] == "Linux"
    assert pricing.hourly_on_demand(products, "g5.2xlarge", "us-east-1") is None
    assert pricing.hourly_on_demand(products, "g5.xlarge", "us-west-2") is None


def test_price_list_parser_refuses_ambiguity_and_garbage() -> None:
    document = json.loads(recorded_answer()["PriceList"][0])
    windows = json.loads(json.dumps(document))
    windows["product"]["attributes"]["operation"] = "RunInstances:0002"  # Windows: not ours
    dims = next(iter(windows["terms"]["OnDemand"].values()))["priceDimensions"]
    next(iter(dims.values()))["pricePerUnit"]["USD"] = "1.19"
    products = pricing.parse_products([json.dumps(document), windows])
    assert pricing.hourly_on_demand(products, "g5.xlarge", "us-east-1").usd == 1.006  # type: ignore[union-attr]

    other = json.loads(json.dumps(document))
    next(iter(next(iter(other["terms"]["OnDemand"].values()))["priceDimensions"].values()))["pricePerUnit"][
        "USD"
    ] = "2.5"
    with pytest.raises(ValidationError, match="2 different on-demand prices"):
        pricing.hourly_on_demand(pricing.parse_products([document, other]), "g5.xlarge", "us-east-1")
    with pytest.raises(ValidationError, match="not a product document"):
        pricing.parse_products(['{"product": '])


def test_filters_are_exact_matches_on_what_a_linux_on_demand_price_means() -> None:
    filters = {f["Field"]: f["Value"] for f in pricing.instance_filters("g5.xlarge", "eu-west-1")}
    assert filters == {
        "instanceType": "g5.xlarge",
        "regionCode": "eu-west-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    assert all(f["Type"] == "TERM_MATCH" for f in pricing.instance_filters("g5.xlarge", "eu-west-1"))


def _serve_recorded(proxy: FaultProxy) -> list[dict]:
    """Answer GetProducts with the recorded answer for g5.xlarge, an empty one for other types."""
    asked: list[dict] = []
    body = json.dumps(recorded_answer()).encode()
    empty = json.dumps({"FormatVersion": "aws_v1", "PriceList": []}).encode()

    def rule(request: Request) -> Fault | None:
        if request.action != "GetProducts":
            return None
        sent = json.loads(request.body)
        asked.append(sent)
        wanted = {f["Field"]: f["Value"] for f in sent["Filters"]}
        hit = wanted.get("instanceType") == "g5.xlarge" and wanted.get("regionCode") == "us-east-1"
        return Fault(200, body if hit else empty, {"Content-Type": "application/x-amz-json-1.1"})

    proxy.rule = rule
    return asked


def test_refresh_asks_the_price_list_and_caches_with_todays_date(fault_proxy, isolated_env) -> None:
    asked = _serve_recorded(fault_proxy)
    result = run_cli(
        "cost",
        "prices",
        "--refresh",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
        "--type",
        "g5.",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert "aws: refreshed 1 prices" in result.stderr
    sent = {tuple(sorted((f["Field"], f["Value"]) for f in a["Filters"])) for a in asked}
    assert all(a["ServiceCode"] == "AmazonEC2" and a["FormatVersion"] == "aws_v1" for a in asked)
    assert len(sent) == len({e.item for e in prices.entries("aws") if e.item.startswith("g5.")})

    cache = json.loads((isolated_env / prices.CACHE_FILE).read_text())
    entry = cache["aws"]["ec2_on_demand_usd_per_hour"]["us-east-1"]["g5.xlarge"]
    assert entry["price"] == 1.006 and entry["as_of"] == prices.today()
    assert entry["source"] == pricing.PRICE_LIST_SOURCE and entry["effective"] == "2025-04-01T00:00:00Z"
    row = next(
        r
        for r in json.loads(result.stdout)["prices"]
        if r["item"] == "g5.xlarge" and r["group"] == "us-east-1"
    )
    assert row["origin"] == "refreshed" and row["stale"] is False
    # the refreshed price is the one runctl now uses for new resources
    price = pricing.on_demand("g5.xlarge", "us-east-1")
    assert price.source == "refreshed" and price.as_of == prices.today()


def test_a_cached_price_replaces_the_shipped_one_only_when_newer(isolated_env) -> None:
    prices.store(
        "aws",
        pricing.ON_DEMAND,
        {"us-east-1": {"t3.micro": {"price": 0.5, "as_of": "2001-01-01", "source": "x"}}},
    )
    assert pricing.on_demand("t3.micro", "us-east-1").usd_per_hour == pytest.approx(0.0104)
    prices.store(
        "aws",
        pricing.ON_DEMAND,
        {"us-east-1": {"t3.micro": {"price": 0.0111, "as_of": prices.today(), "source": "x"}}},
    )
    assert pricing.on_demand("t3.micro", "us-east-1").usd_per_hour == pytest.approx(0.0111)
    (isolated_env / prices.CACHE_FILE).write_text("{not json")
    assert pricing.on_demand("t3.micro", "us-east-1").usd_per_hour == pytest.approx(0.0104)  # ignored, said


def test_refresh_against_moto_fails_clearly_and_caches_nothing(aws, isolated_env) -> None:
    """moto answers GetProducts with HTTP 500: retried, then a clear error; no cache written."""
    fast = {
        "RUNCTL_RETRY__MAX_ATTEMPTS": "2",
        "RUNCTL_RETRY__INITIAL_DELAY": "10ms",
        "RUNCTL_RETRY__MAX_DELAY": "20ms",
    }
    result = run_cli(
        "cost",
        "prices",
        "--refresh",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
        "--type",
        "g5.xlarge",
        env=fast,
    )
    assert result.returncode in (69, 75), result.stderr
    assert "aws: refresh failed" in result.stderr and "price list of g5.xlarge" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (isolated_env / prices.CACHE_FILE).exists()


def test_runpod_refresh_reads_gpu_types(runpod_fake: FakeRunpod, isolated_env) -> None:
    result = run_cli("cost", "prices", "--refresh", "--provider", "runpod", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert runpod_fake.count("gpuTypes") == 1
    rows = {(r["group"], r["item"]): r for r in json.loads(result.stdout)["prices"]}
    h100 = rows[("secure", "NVIDIA H100 80GB HBM3")]  # the fake says 2.99; the catalogue 3.29
    assert h100["usd"] == 2.99 and h100["origin"] == "refreshed" and h100["as_of"] == prices.today()
    assert ("community", "NVIDIA H100 80GB HBM3") not in rows or rows[("community", "NVIDIA H100 80GB HBM3")][
        "origin"
    ] == "catalogue"
    assert rows[("community", "NVIDIA RTX A5000")]["usd"] == 0.16


def test_runpod_refresh_without_a_key_says_how_to_get_one() -> None:
    result = run_cli("cost", "prices", "--refresh", "--provider", "runpod")
    assert result.returncode == 77 and "RUNPOD_API_KEY" in result.stderr


# -- EBS extras --------------------------------------------------------------------------------


def test_gp3_extras_above_the_free_baseline_are_prorated() -> None:
    base = pricing.ebs("gp3", 100, "us-east-1")
    fast = pricing.ebs("gp3", 100, "us-east-1", iops=6000, throughput=250)
    assert base.usd_per_hour == pytest.approx(100 * 0.08 / 730)
    assert fast.usd_per_hour == pytest.approx((100 * 0.08 + 3000 * 0.005 + 125 * 0.04) / 730)
    assert pricing.ebs("gp3", 100, "us-east-1", iops=3000, throughput=125).usd_per_hour == base.usd_per_hour
    assert "gp3_iops" in (fast.note or "") and "gp3_throughput" in (fast.note or "")


def test_io2_iops_are_priced_by_tier() -> None:
    price = pricing.ebs("io2", 500, "us-east-1", iops=70_000)
    monthly = 500 * 0.125 + 32_000 * 0.065 + 32_000 * 0.0455 + 6_000 * 0.03185
    assert price.usd_per_hour == pytest.approx(monthly / 730)
    assert pricing.ebs("io1", 100, "us-east-1", iops=1000).usd_per_hour == pytest.approx((12.5 + 65) / 730)


def test_a_volume_is_billed_with_its_extras(fault_proxy, aws) -> None:
    provider = make_provider()
    row, _volume = provider.volumes.create(size_gb=200, volume_type="gp3", iops=5000, throughput=500)
    assert row.rate_usd_per_hour == pytest.approx((200 * 0.08 + 2000 * 0.005 + 375 * 0.04) / 730)


# -- spot rates that move ----------------------------------------------------------------------


def _spot_answer(price: str, zone: str, when: float) -> Fault:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>r-1</requestId><spotPriceHistorySet><item>"
        f"<instanceType>g5.xlarge</instanceType><productDescription>Linux/UNIX</productDescription>"
        f"<spotPrice>{price}</spotPrice><timestamp>{stamp}</timestamp>"
        f"<availabilityZone>{zone}</availabilityZone></item></spotPriceHistorySet><nextToken/>"
        "</DescribeSpotPriceHistoryResponse>"
    ).encode()
    return Fault(200, body, {"Content-Type": "text/xml"})


def test_spot_rate_falls_back_to_the_bound_then_follows_real_quotes(fault_proxy, aws) -> None:
    provider = make_provider()
    plan = provider.plan(
        provider.spec(
            LaunchOptions(instance_type="g5.xlarge", spot=True, fallback=False, image=al2023_image(aws))
        )
    )
    machine = provider.apply(plan)[0]
    row = provider.ledger.get_resource(machine.resource_id)
    # moto's 0.00001 dated 2006 is not believed: the on-demand upper bound is recorded, and said
    assert row.rate_usd_per_hour == pytest.approx(1.006) and row.spec["market"] == "spot"
    assert row.spec["rate"]["source"] == "upper-bound" and "2006" in row.spec["rate"]["note"]
    report = cost.report(provider.ledger, by="resource")
    assert any(row.id in note and "upper bound" in note for note in report.notes)
    assert provider.refresh_rate(row) is None  # still moto's constant: nothing changes

    fault_proxy.rule = lambda r: (
        _spot_answer("0.4123", row.zone or "", time.time() - 600)
        if r.action == "DescribeSpotPriceHistory"
        else None
    )
    assert provider.refresh_rate(row) == pytest.approx(0.4123)
    intervals = provider.ledger.usage(resource_id=row.id)
    assert [i.rate_usd_per_hour for i in intervals] == pytest.approx([1.006, 0.4123])
    assert intervals[0].ended_at == intervals[1].started_at and intervals[1].ended_at is None
    fresh = provider.ledger.get_resource(row.id)
    assert fresh.spec["rate"]["source"] == "spot-price-history"
    assert provider.refresh_rate(fresh) is None  # same quote again: no new split
    assert len(provider.ledger.usage(resource_id=row.id)) == 2
    assert not any(row.id in note for note in cost.report(provider.ledger, by="resource").notes)


def test_on_demand_and_unknown_rates_show_in_report_notes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    unknown = ledger.record_intent(provider="aws", kind="instance", spec={"instance_type": "x9.huge"})
    ledger.mark_created(unknown.id, cloud_id="i-1", state="running", billable=True, rate_usd_per_hour=None)
    notes = cost.report(ledger, by="resource").notes
    assert notes == [f"{unknown.id} (aws instance i-1): no price known (not in the catalogue); counted as $0"]


def test_the_maintainer_script_regenerates_from_the_price_list(fault_proxy, tmp_path) -> None:
    """scripts/regen_prices.py against the recorded answer (a price moved): the change is
    listed, what the API did not answer is kept and said, and --dry-run writes nothing."""
    import subprocess
    import sys

    from tests.conftest import REPO

    moved = json.dumps(recorded_answer()).replace("1.0060000000", "1.1000000000").encode()
    empty = json.dumps({"FormatVersion": "aws_v1", "PriceList": []}).encode()

    def rule(request: Request) -> Fault | None:
        if request.action != "GetProducts":
            return None
        wanted = {f["Field"]: f["Value"] for f in json.loads(request.body)["Filters"]}
        hit = wanted.get("instanceType") == "g5.xlarge"
        return Fault(200, moved if hit else empty, {"Content-Type": "application/x-amz-json-1.1"})

    fault_proxy.rule = rule
    catalogue = REPO / "src" / "runctl" / "data" / "aws_ec2_prices.json"
    before = catalogue.read_bytes()
    script = str(REPO / "scripts" / "regen_prices.py")
    argv = [sys.executable, script, "--dry-run", "--no-runpod", "--regions", "us-east-1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "aws: ec2_on_demand_usd_per_hour us-east-1 g5.xlarge: 1.1 (was 1.006 of 2025-05-01)" in proc.stdout
    assert "kept (not answered by the API): aws us-east-1 t3.micro" in proc.stderr
    assert "kept (not answered by the API): aws us-east-1 ebs gp3" in proc.stderr
    assert catalogue.read_bytes() == before
    asked = [json.loads(r.body) for r in fault_proxy.requests if r.action == "GetProducts"]
    families = {f["Value"] for a in asked for f in a["Filters"] if f["Field"] == "productFamily"}
    assert families == {"Storage", "System Operation", "Provisioned Throughput", "Storage Snapshot"}
