"""Helpers for the AWS tests: fast retry policies, a provider on the test ledger, direct boto3
clients for asserting on the moto server (bypassing any fault proxy), and proxy rules."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from runctl.core.config import Config
from runctl.core.ledger import Ledger
from runctl.core.retry import RetryPolicy
from runctl.providers.aws.provider import AwsProvider
from tests.support.fault_proxy import Fault, FaultProxy, Request, ec2_error

FAST_API = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02, deadline=30, name="test api")
FAST_POLL = RetryPolicy(max_attempts=100, initial_delay=0.01, max_delay=0.02, deadline=1.5, name="test poll")


def make_provider(config: Config | None = None, **kwargs: Any) -> AwsProvider:
    """An AwsProvider on the test's ledger (the isolated state dir) with fast policies."""
    return AwsProvider(Ledger.open_default(), config or Config(), api=FAST_API, poll=FAST_POLL, **kwargs)


def boto(service: str, moto_url: str, region: str = "us-east-1") -> Any:
    """A boto3 client talking to moto directly (never through the fault proxy)."""
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=moto_url)


def alive_instances(moto_url: str) -> dict[str, dict[str, Any]]:
    """Instance id → instance, for every instance not terminated/shutting down."""
    reservations = boto("ec2", moto_url).describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def al2023_image(moto_url: str, arch: str = "x86_64") -> str:
    """An AL2023 image id moto knows (for explicit --ami)."""
    images = boto("ec2", moto_url).describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": [f"al2023-ami-2023.*-kernel-6.1-{arch}"]}]
    )["Images"]
    return str(images[0]["ImageId"])


def unaccounted(moto_url: str, ledger: Ledger) -> set[str]:
    """Instances alive in the cloud that no live ledger row names: what 'leaked' means."""
    known = {r.cloud_id for r in ledger.list_resources(provider="aws", include_gone=False)}
    return set(alive_instances(moto_url)) - known


def form(request: Request) -> dict[str, list[str]]:
    """The query-protocol parameters of a request that went through the proxy."""
    return urllib.parse.parse_qs(request.body.decode())


def lost_response(proxy: FaultProxy, action: str, *, times: int = 1) -> None:
    """The first ``times`` ``action`` requests reach moto, but their answers are lost (503)."""
    remaining = [times]

    def rule(request: Request) -> Fault | None:
        if request.action != action or remaining[0] <= 0:
            return None
        remaining[0] -= 1
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
        conn.request(request.method, request.path, body=request.body, headers=headers)
        conn.getresponse().read()
        conn.close()
        return ec2_error("InternalError", 503, "the answer was lost")

    proxy.rule = rule


def refuse_spot(proxy: FaultProxy, code: str = "InsufficientInstanceCapacity") -> None:
    """Every spot RunInstances is refused for capacity; on-demand goes through."""

    def rule(request: Request) -> Fault | None:
        if request.action == "RunInstances" and b"MarketType=spot" in request.body:
            return ec2_error(code)
        return None

    proxy.rule = rule


def json_error(code: str, status: int = 400) -> Fault:
    """An error answer in the AWS JSON protocol (SSM and friends)."""
    body = f'{{"__type":"{code}","message":"injected"}}'.encode()
    return Fault(status=status, body=body, headers={"Content-Type": "application/x-amz-json-1.1"})


def ssm_registry(registered: Callable[[str], bool]) -> Callable[[Request], Fault | None]:
    """A proxy rule playing SSM's registry of managed machines, which moto lacks (it answers
    DescribeInstanceInformation 500 and accepts every SendCommand at once): the registry is
    answered from ``registered(instance_id)``, and a SendCommand to a machine not registered yet
    is refused ``InvalidInstanceId``, as real SSM does."""

    def rule(request: Request) -> Fault | None:
        if request.action not in ("DescribeInstanceInformation", "SendCommand"):
            return None
        body = json.loads(request.body or b"{}")
        if request.action == "SendCommand":
            ids = body.get("InstanceIds", [])
            return None if all(registered(i) for i in ids) else json_error("InvalidInstanceId")
        asked = [v for f in body.get("Filters", []) if f.get("Key") == "InstanceIds" for v in f["Values"]]
        listed = [
            {"InstanceId": i, "PingStatus": "Online", "PlatformType": "Linux"} for i in asked if registered(i)
        ]
        answer = json.dumps({"InstanceInformationList": listed}).encode()
        return Fault(status=200, body=answer, headers={"Content-Type": "application/x-amz-json-1.1"})

    return rule
