"""The ``[storage]`` settings the controller hands to the agent, so that both reach the same store.

The agent opens the job's storage from its URI *and* the controller's ``[storage]``
``endpoint_url``, ``region`` and ``s3_checksums`` (a MinIO or R2 bucket is not on AWS S3; a store
that refuses ``x-amz-checksum-*`` refuses it from the machine too). They travel as environment
variables of the start command, under the names runctl's config already reads
(``RUNCTL_STORAGE__ENDPOINT_URL``, ``RUNCTL_STORAGE__REGION``, ``RUNCTL_STORAGE__S3_CHECKSUMS``),
and ``runctl agent run`` takes them as options (``--storage-endpoint-url``, ``--storage-region``,
``--storage-checksums/--no-storage-checksums``) that fall back to those variables. Credentials
are never among them: an EC2 machine uses its instance role, a pod the variables the controller
sets for it (:func:`runctl.workflows.remote.storage_credentials`). The other transfer knobs keep
their defaults on the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runctl.core.config import StorageConfig

ENDPOINT_URL_ENV = "RUNCTL_STORAGE__ENDPOINT_URL"
REGION_ENV = "RUNCTL_STORAGE__REGION"
S3_CHECKSUMS_ENV = "RUNCTL_STORAGE__S3_CHECKSUMS"


def agent_storage_env(config: StorageConfig) -> dict[str, str]:
    """The controller's side: the variables that give the agent these ``[storage]`` settings."""
    env = {S3_CHECKSUMS_ENV: "true" if config.s3_checksums else "false"}
    if config.endpoint_url:
        env[ENDPOINT_URL_ENV] = config.endpoint_url
    if config.region:
        env[REGION_ENV] = config.region
    return env


def agent_storage_config(
    *, endpoint_url: str | None, region: str | None, s3_checksums: bool
) -> StorageConfig:
    """The agent's side: a ``[storage]`` section holding only what the controller sent."""
    from runctl.core.config import StorageConfig

    return StorageConfig(endpoint_url=endpoint_url or None, region=region or None, s3_checksums=s3_checksums)
