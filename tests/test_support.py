"""The test infrastructure itself: moto reachable through AWS_ENDPOINT_URL, proxy injects."""

from __future__ import annotations

import pytest

from runctl.clients import aws as aws_clients
from runctl.core.errors import RetryExhaustedError, ThrottledError
from runctl.core.retry import RetryPolicy
from tests.support.fault_proxy import FaultProxy, ec2_error


def test_boto3_reaches_moto_through_the_endpoint_variable(aws: str) -> None:
    ec2 = aws_clients.client("ec2", "us-east-1")
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert zones and all(z["RegionName"] == "us-east-1" for z in zones)
    assert ec2.meta.endpoint_url == aws


def test_injected_throttling_is_retried_then_succeeds(fault_proxy: FaultProxy) -> None:
    fault_proxy.fail_first(2, ec2_error("RequestLimitExceeded", 503), action="DescribeRegions")
    ec2 = aws_clients.client("ec2", "us-east-1")
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.05, deadline=10)
    regions = aws_clients.call(ec2.describe_regions, operation="describe regions", policy=policy)
    assert regions["Regions"]
    assert fault_proxy.count("DescribeRegions") == 3
    assert fault_proxy.injected == 2


def test_persistent_throttling_is_bounded(fault_proxy: FaultProxy) -> None:
    fault_proxy.fail_first(100, ec2_error("RequestLimitExceeded", 503))
    ec2 = aws_clients.client("ec2", "us-east-1")
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, deadline=10)
    with pytest.raises(RetryExhaustedError) as info:
        aws_clients.call(ec2.describe_regions, operation="describe regions", policy=policy)
    assert isinstance(info.value.last_error, ThrottledError)
    assert fault_proxy.count("DescribeRegions") == 3  # boto3 itself did not retry
