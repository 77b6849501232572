"""AMI lookup against a moto server: the documented fallback order, found and not-found paths."""

from __future__ import annotations

import pytest

from runctl.core.errors import NotFoundError, ValidationError
from runctl.providers.aws.ami import DLAMI_NAMES, AmiResolver
from runctl.providers.aws.context import AwsContext
from tests.support.aws import FAST_API, al2023_image, boto, json_error


def _resolver(owners: tuple[str, ...] = ("amazon",)) -> AmiResolver:
    return AmiResolver(AwsContext(region="us-east-1", api=FAST_API), owners=owners)


def _register(moto_url: str, name: str) -> str:
    """An image named like a DLAMI, owned by this account (moto has no current DLAMIs)."""
    ec2 = boto("ec2", moto_url)
    instance = ec2.run_instances(
        ImageId=al2023_image(moto_url), InstanceType="t3.micro", MinCount=1, MaxCount=1
    )
    return str(ec2.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name=name)["ImageId"])


def test_amazon_linux_2023_comes_from_the_ssm_public_parameter(aws):
    choice = _resolver().resolve(gpu=False, architecture="x86_64")
    value = boto("ssm", aws).get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    assert choice.image_id == value
    assert choice.source.startswith("ssm:") and choice.architecture == "x86_64"
    assert choice.root_device_name  # needed to size the root volume
    arm = _resolver().resolve(gpu=False, architecture="arm64")
    assert arm.architecture == "arm64" and arm.image_id != choice.image_id


def test_without_ssm_access_the_newest_al2023_image_is_found_by_name(fault_proxy, aws):
    fault_proxy.fail_first(10, json_error("AccessDeniedException"), action="GetParameters")
    choice = _resolver().resolve(gpu=False, architecture="x86_64")
    assert choice.source.startswith("describe_images:al2023-ami-2023.*")
    assert (
        choice.name.startswith("al2023-ami-2023.")
        and "minimal" not in choice.name
        and "ecs" not in choice.name
    )
    assert any("SSM public parameters unavailable" in n for n in choice.notes)


def test_gpu_types_find_the_newest_deep_learning_ami(aws):
    older = _register(aws, "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20250101")
    newer = _register(aws, "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20250301")
    _register(aws, "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.5 (Amazon Linux 2023) 20250401")
    choice = _resolver(owners=("self",)).resolve(gpu=True, architecture="x86_64")
    assert choice.image_id == newer != older  # the first name pattern wins; newest within it
    assert choice.source == f"describe_images:{DLAMI_NAMES[0]}"
    assert any("not found" in n for n in choice.notes)  # the SSM parameter step was tried first


def test_gpu_types_never_fall_back_to_plain_amazon_linux(aws):
    """moto has only two 2017 "Deep Learning AMI …" images: they must not be picked either."""
    with pytest.raises(NotFoundError) as caught:
        _resolver().resolve(gpu=True, architecture="x86_64")
    message = str(caught.value)
    assert "no Deep Learning AMI for x86_64 found in us-east-1" in message
    assert "base-oss-nvidia-driver-gpu-amazon-linux-2023" in message
    assert "--ami" in (caught.value.hint or "") and "NVIDIA" in (caught.value.hint or "")


def test_explicit_image_is_checked(aws):
    image = al2023_image(aws)
    assert _resolver().resolve(gpu=True, architecture="x86_64", explicit=image).source == "explicit"
    with pytest.raises(ValidationError, match="does not exist in us-east-1"):
        _resolver().resolve(gpu=False, architecture="x86_64", explicit="ami-0123456789abcdef0")
    with pytest.raises(ValidationError, match="not an EC2 image id"):
        _resolver().resolve(gpu=False, architecture="x86_64", explicit="ami-xyz")
