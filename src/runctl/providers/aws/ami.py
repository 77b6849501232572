"""Which image to boot: the newest Deep Learning AMI for GPU types, Amazon Linux 2023 otherwise.

Looked up, never hard-coded (image ids differ per region and change every few weeks). The
fallback order — first hit wins:

1. **Explicit**: ``--ami``, else ``[aws] default_ami``. It must exist (``describe_images``) and
   suit the instance type's architecture, or the launch is refused before any create call.
2. **SSM public parameters** (one ``get_parameters`` call, order kept):
   GPU types: ``/aws/service/deeplearning/ami/<arch>/base-oss-nvidia-driver-gpu-amazon-linux-2023/
   latest/ami-id``, then the ``…-ubuntu-22.04`` one; other types:
   ``/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-<arch>``. A parameter that is
   missing, or SSM refusing access, moves on to step 3 (the reason is kept in the notes).
3. **describe_images** (owner ``amazon``; available; the architecture) by name, newest
   ``CreationDate`` first (name breaks ties; names carry the build date): the current DLAMI
   names (Base OSS Nvidia Driver GPU AMI for Amazon Linux 2023, then Ubuntu 22.04, then the
   PyTorch DLAMI), or ``al2023-ami-2023.*-kernel-*-<arch>`` (not minimal, not ECS).
4. **Nothing** → :class:`NotFoundError` naming the region, architecture and what was searched,
   with the fix (``--ami`` or ``aws.default_ami``).

A GPU type never falls back to plain Amazon Linux: it has no NVIDIA driver, so the machine would
boot, bill, and fail only when training starts. Old-style DLAMIs ("Deep Learning AMI Amazon Linux
- 3.3_Oct2017", the two moto ships) do not match the current names and are never picked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runctl.core.errors import NotFoundError, RunctlError, ValidationError
from runctl.providers.aws.context import AwsContext, check_id

DLAMI_PARAMETERS = (
    "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
    "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
)
AL2023_PARAMETERS = ("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}",)
DLAMI_NAMES = (
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) *",
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Amazon Linux 2023) *",
    "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
)
AL2023_NAMES = ("al2023-ami-2023.*-kernel-*-{arch}",)


@dataclass(frozen=True)
class AmiChoice:
    """The image a launch will boot, and how it was found."""

    image_id: str
    name: str
    architecture: str
    root_device_name: str | None
    created: str | None
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "notes": list(self.notes)}


class AmiResolver:
    """Finds the image for an instance type in one region (see the module docstring)."""

    def __init__(self, ctx: AwsContext, *, owners: tuple[str, ...] = ("amazon",)) -> None:
        self.ctx = ctx
        self.owners = owners

    def resolve(self, *, gpu: bool, architecture: str, explicit: str | None = None) -> AmiChoice:
        """The image to boot for a (GPU or not) type of ``architecture``."""
        if explicit:
            return self._explicit(explicit, architecture)
        kind = "Deep Learning AMI" if gpu else "Amazon Linux 2023 AMI"
        notes: list[str] = []
        parameters = [p.format(arch=architecture) for p in (DLAMI_PARAMETERS if gpu else AL2023_PARAMETERS)]
        found = self._from_parameters(parameters, architecture, notes)
        if found is not None:
            return found
        patterns = [p.format(arch=architecture) for p in (DLAMI_NAMES if gpu else AL2023_NAMES)]
        found = self._from_names(patterns, architecture, notes)
        if found is not None:
            return found
        raise NotFoundError(
            f"no {kind} for {architecture} found in {self.ctx.region} "
            f"(searched SSM parameters {', '.join(parameters)} and images named "
            f"{' / '.join(patterns)} owned by {', '.join(self.owners)})",
            operation="find AMI",
            hint="pass --ami ami-… (or set [aws] default_ami) with an image that has the NVIDIA driver"
            if gpu
            else "pass --ami ami-… (or set [aws] default_ami)",
        )

    def describe(self, image_id: str) -> dict[str, Any] | None:
        """The image, or None when it does not exist in this region."""
        try:
            images = self.ctx.call(
                "describe_images", operation=f"describe image {image_id}", ImageIds=[image_id]
            )["Images"]
        except NotFoundError:
            return None
        return images[0] if images else None

    def _explicit(self, image_id: str, architecture: str) -> AmiChoice:
        check_id(image_id, "image", argument="--ami")
        image = self.describe(image_id)
        if image is None:
            raise ValidationError(
                f"AMI {image_id} does not exist in {self.ctx.region}",
                resource_id=image_id,
                hint="AMI ids are per region: check --ami / [aws] default_ami, or leave it out",
            )
        choice = _choice(image, "explicit")
        if choice.architecture != architecture:
            raise ValidationError(
                f"AMI {image_id} is for {choice.architecture} but the instance type needs {architecture}",
                resource_id=image_id,
                hint="choose an image built for the instance type's architecture",
            )
        return choice

    def _from_parameters(self, names: list[str], architecture: str, notes: list[str]) -> AmiChoice | None:
        try:
            answer = self.ctx.call(
                "get_parameters", service="ssm", operation="look up public AMI parameters", Names=names
            )
        except RunctlError as exc:
            notes.append(f"SSM public parameters unavailable ({exc}); searched images by name")
            return None
        values = {p["Name"]: p["Value"] for p in answer.get("Parameters", [])}
        for name in names:
            image_id = values.get(name)
            image = self.describe(image_id) if image_id else None
            if image is not None and image.get("Architecture") == architecture:
                return _choice(image, f"ssm:{name}", notes)
            notes.append(f"SSM parameter {name} " + ("names a missing image" if image_id else "not found"))
        return None

    def _from_names(self, patterns: list[str], architecture: str, notes: list[str]) -> AmiChoice | None:
        for pattern in patterns:
            images = self.ctx.call(
                "describe_images",
                operation="search AMIs by name",
                Owners=list(self.owners),
                Filters=[
                    {"Name": "name", "Values": [pattern]},
                    {"Name": "state", "Values": ["available"]},
                    {"Name": "architecture", "Values": [architecture]},
                ],
            )["Images"]
            if images:
                newest = max(images, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))
                return _choice(newest, f"describe_images:{pattern}", notes)
        return None


def _choice(image: dict[str, Any], source: str, notes: list[str] | None = None) -> AmiChoice:
    return AmiChoice(
        image_id=image["ImageId"],
        name=image.get("Name", ""),
        architecture=image.get("Architecture", "x86_64"),
        root_device_name=image.get("RootDeviceName"),
        created=image.get("CreationDate"),
        source=source,
        notes=tuple(notes or ()),
    )
