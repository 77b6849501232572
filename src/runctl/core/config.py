"""Configuration: pydantic v2 models, discovery, layering and error messages that name the fix.

Layers, lowest priority first; a later layer overrides single keys of an earlier one:

1. the built-in defaults (every section is optional: an empty config runs ``runctl local``);
2. the user config (``~/.config/runctl/config.toml``, see :mod:`runctl.core.paths`);
3. the project config: ``--config FILE`` if given, else the nearest ``.runctl.toml`` searched
   upward from the working directory;
4. environment variables ``RUNCTL_<SECTION>__<KEY>`` (e.g. ``RUNCTL_LOCAL__GRACE_PERIOD=10s``).

Validation happens on load. Unknown sections and keys are errors (a typo must not silently
fall back to a default) with a "did you mean". Every error names where the value came from
(file or environment variable), the key path and what to write instead.

Durations accept seconds (``30``) or a number with a unit (``500ms``, ``30s``, ``5m``, ``2h``,
``1d``), at most :data:`MAX_DURATION_S` (ten years: anything longer is a typo, and would
overflow the timers it feeds). Every number must be finite: ``inf`` and ``nan`` are refused for
prices, rates, budgets and durations, from a file or a ``RUNCTL_*`` variable alike.
Sizes (``[storage]``) accept bytes (``1048576``) or a number with a unit
(``64MiB``, ``1GiB``; ``MB``/``GB`` are decimal). Secrets (``runpod.api_key``) are
:class:`pydantic.SecretStr`: masked in every repr, in ``model_dump`` and in ``runctl config show``.
AWS credentials are never read from runctl's config: boto3's own credential chain is the only
source.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from runctl.core.errors import ConfigError
from runctl.core.paths import find_project_config, user_config_path

ENV_PREFIX = "RUNCTL_"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 10 * 365 * 86400.0
#: An AWS region's name: partition-area[-qualifier]-direction-number (us-east-1, us-gov-west-1,
#: cn-north-1, us-isob-east-1); checked by shape, so a region newer than runctl still passes.
AWS_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+){1,3}-\d{1,2}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30"``, ``"500ms"``, ``"5m"``, ``"2h"``, ``"1d"``; must be > 0."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise ValueError(
            f"{value!r} is not a duration: write seconds (30) or a number with a unit "
            "(500ms, 30s, 5m, 2h, 1d)"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be greater than 0, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be at most 3650d (ten years), got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"64MiB"``, ``"64M"`` (binary), ``"100MB"`` (decimal)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '64MiB'")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _SIZE_RE.match(value)):
        unit = match.group(2).lower()
        if unit in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"{value!r} is not a size: write bytes (1048576) or a number with a unit (64MiB, 1GiB)")


ByteSize = Annotated[int, BeforeValidator(parse_size)]


class _Section(BaseModel):
    # a field's docstring is its description: docs/reference/config.md is generated from them
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class AwsConfig(_Section):
    """``[aws]``: EC2, EBS and S3. Credentials come from boto3's chain, never from here."""

    region: str | None = None
    """Region for every AWS call (default: boto3's: `AWS_REGION`, `~/.aws/config`)."""
    default_instance_type: str = "g5.xlarge"
    """Instance type when a command is given none."""
    default_ami: str | None = None
    """Image for every launch (default: the newest Deep Learning AMI for GPU types, else AL2023)."""
    use_spot: bool = False
    """Launch spot instances by default (`--spot`)."""
    spot_max_price: PositiveFloat | None = None
    """Most USD/hour to pay for spot (default: the on-demand price)."""
    fallback_to_on_demand: bool = True
    """Launch on-demand once every zone has refused spot (`--fallback`)."""
    iam_instance_profile: str | None = None
    """Instance profile (name or ARN) for new instances; remote jobs reach S3 with it."""
    key_name: str | None = None
    """EC2 key pair passed to `run_instances` (runctl itself never needs SSH)."""
    subnet_id: str | None = None
    """Subnet passed to `run_instances`; it pins the zone."""
    security_group_ids: list[str] = Field(default_factory=list)
    """Security groups passed to `run_instances`."""
    root_volume_gb: PositiveInt = 100
    """Root volume size in GB (gp3, deleted with the instance)."""
    s3_bucket: str | None = None
    """Job storage bucket when `[storage] uri` is unset."""
    s3_prefix: str = "runctl"
    """Key prefix under `s3_bucket`."""
    max_running_instances: PositiveInt = 10
    """Guard: `aws create` / `aws start` refuse more runctl instances in the region without `--yes`."""

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str | None) -> str | None:
        """A region is checked on load: a typo must not pass ``config validate`` and fail at the
        first call (an endpoint that does not resolve)."""
        if value is not None and not AWS_REGION_RE.match(value):
            raise ValueError(
                f"{value!r} is not an AWS region name: write one like us-east-1, eu-west-3 or us-gov-west-1"
            )
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        """A bad bucket name is a config error on load, not a failure at the first upload."""
        return value if value is None else _storage_check("validate_bucket", value)


class RunpodConfig(_Section):
    """``[runpod]``: the GraphQL API. The key may also come from ``RUNPOD_API_KEY``."""

    api_key: SecretStr | None = None
    """Secret: the RunPod API key; `RUNPOD_API_KEY` wins and is preferred. Masked everywhere."""
    api_url: str = "https://api.runpod.io"
    """API base URL (`/graphql` is appended); plain `http://` only for loopback hosts (test servers)."""
    default_gpu: str = "NVIDIA GeForce RTX 4090"
    """GPU type when `--gpu` is not given."""
    gpu_count: PositiveInt = 1
    """GPUs per pod."""
    cloud_type: Literal["secure", "community", "all"] = "secure"
    """`secure`, `community` or `all` (secure first, then community)."""
    image: str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    """Container image of new pods."""
    container_disk_gb: PositiveInt = 50
    """Container disk in GB (deleted when the pod stops)."""
    volume_gb: int = Field(default=0, ge=0)
    """Persistent volume in GB mounted at `/workspace` (0: none)."""
    long_lived_credentials: bool = False
    """Pods get short-lived STS credentials limited to their job's storage; a job that may outlive
    them (no max duration, or too long a one) is refused unless this is true, and then gets the
    controller's own keys."""


class LocalConfig(_Section):
    """``[local]``: how ``runctl local`` runs a script on this machine."""

    grace_period: Duration = 30.0
    """Time a script gets to save after SIGTERM before SIGKILL."""
    max_duration: Duration | None = None
    """Stop local jobs gracefully after this long (exit 124)."""
    python: str | None = None
    """Interpreter for `.py` scripts (default: the one running runctl)."""
    use_uv: bool = True
    """Run scripts that carry PEP 723 inline metadata with `uv run` when uv is installed."""
    rate_usd_per_hour: NonNegativeFloat = 0.0
    """What this machine costs per hour, for cost reports."""
    cgroup_root: Path | None = None
    """A delegated cgroup2 directory: each job gets a cgroup below it, killed whole at its end."""
    max_log_size: ByteSize | None = None
    """Rotate a job's log at this size, keeping one `.1` (unset: no cap)."""

    @field_validator("max_log_size")
    @classmethod
    def _positive_size(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_log_size must be greater than 0 (e.g. '100MiB'), or unset")
        return value


class CheckpointConfig(_Section):
    """``[checkpoint]``: where checkpoints go and how many are kept."""

    dir: Path | None = None
    """Root of the per-job checkpoint directories (default: `<state dir>/checkpoints`)."""
    keep_last_n: PositiveInt | None = None
    """Prune all but the newest N checkpoints (default: keep all)."""
    resume: bool = True
    """`runctl local` resumes the last unfinished job of the same name by default."""

    @field_validator("dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        """``dir = ""`` would be read as the current directory: refuse it."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path; give a directory, or leave the key out")
        return value


class MonitoringConfig(_Section):
    """``[monitoring]``: metrics and logs."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve Prometheus `/metrics` on this port while a command runs."""
    metrics_host: str = "127.0.0.1"  # address /metrics binds; "0.0.0.0" for a remote Prometheus
    """Address `/metrics` binds (`0.0.0.0` for a remote Prometheus)."""
    textfile_dir: Path | None = None
    """Write `runctl.prom` here on exit, for node_exporter's textfile collector."""
    pushgateway_url: str | None = None
    """Push the metrics to this Pushgateway when a command exits."""
    log_format: Literal["text", "json"] = "text"
    """`text` for people or `json` (one object per line) for runctl's own logs on stderr."""
    heartbeat_interval: Duration = 5.0
    """How often the agent uploads status, a log chunk and new checkpoints."""


class CostConfig(_Section):
    """``[cost]``: budgets that refuse a launch before it overspends (see :mod:`runctl.core.budget`).

    ``budget_usd`` caps the spend of a calendar ``budget_period`` (UTC); ``max_hourly_usd`` the
    rate of everything running; ``max_cost_usd`` each job (a running job is stopped gracefully at
    it); ``warn_at`` is the fraction of a limit that warns. Prices older than
    ``price_stale_days`` are shown as stale; ``rate_refresh_interval`` is how often a remote
    job's controller re-reads the price of its machine (spot prices move).
    """

    budget_usd: PositiveFloat | None = None
    """Total spend allowed per `budget_period`."""
    budget_period: Literal["day", "week", "month"] = "month"
    """`day`, `week` (from Monday) or `month`: calendar periods in UTC."""
    max_hourly_usd: PositiveFloat | None = None
    """Limit on the $/h of everything running now plus a launch's."""
    max_cost_usd: PositiveFloat | None = None
    """Per-job limit over all attempts and resources; a running job is stopped gracefully at it."""
    warn_at: float = Field(default=0.8, gt=0, le=1)
    """Warn when a figure reaches this fraction of its limit."""
    price_stale_days: PositiveInt = 30
    """Catalogue or spot prices older than this are stale (not believed)."""
    rate_refresh_interval: Duration = 600.0
    """How often a running remote job's spot price is re-read."""


class RemoteConfig(_Section):
    """``[remote]``: deadlines of remote jobs (see :mod:`runctl.workflows.remote`).

    ``agent_start_timeout`` (default 10 minutes) bounds the agent's own start, measured from the
    machine reaching ``running``: on EC2 the wait for the machine to register with SSM (the start
    command is sent, and ``InvalidInstanceId`` retried, only within it), then the first heartbeat
    of the attempt in storage. One value for both: a user thinks of "the agent did not start",
    not of SSM. Past it the attempt ends ``failed_setup`` with what the provider could tell
    (the SSM command's output) and its machine is released. It does not bound the user's own
    environment setup or the script.
    """

    agent_start_timeout: Duration = Field(default=600.0, gt=0)
    """How long the agent may take to start, from its machine reaching running (SSM registration
    on EC2, then its first heartbeat); past it the attempt ends failed_setup and the machine is
    released."""
    agent_source: str = "ship"
    """How the agent gets onto the machine: `ship` (the controller's own runctl, as a wheel with
    its dependencies, SHA-256-checked), `preinstalled` (a `runctl` already on the image's PATH) or
    `pip:REQUIREMENT` (installed by name from the machine's package index: only if you trust it)."""
    agent_platforms: list[str] = Field(
        default_factory=lambda: ["manylinux2014_x86_64", "manylinux2014_aarch64"]
    )
    """Platform tags the shipped wheelhouse covers (`host`: only this machine's platform)."""
    agent_python_versions: list[str] = Field(default_factory=lambda: ["3.11", "3.12", "3.13"])
    """Python versions the shipped wheelhouse covers (ignored for the `host` platform)."""
    agent_cache_dir: Path | None = None
    """Where the shipped wheel and wheelhouse are cached (default: `<state dir>/agent-cache`)."""
    python_mirror: str | None = None
    """Where uv downloads a managed CPython when the machine's is older than 3.11 (default: uv's)."""
    setup_timeout: Duration = Field(default=3600.0, gt=0)
    """How long a job's `--setup` command may run on its machine; past it the attempt ends
    failed_setup."""

    @field_validator("agent_source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in ("ship", "preinstalled") or (value.startswith("pip:") and value[4:].strip()):
            return value
        raise ValueError(
            f"agent_source {value!r} is not 'ship', 'preinstalled' or 'pip:REQUIREMENT' "
            "(e.g. 'pip:runctl==0.1.0')"
        )


class RecoveryConfig(_Section):
    """``[recovery]``: what a remote job does when an attempt ends early (see
    :mod:`runctl.core.recovery`). One rule per event, each with its own count; the overall caps
    are ``max_total_duration`` here and ``[cost] max_cost_usd``. The same names are options of
    the train commands, and the values a job was submitted with are stored with it.
    """

    max_preemptions: int = Field(default=3, ge=0)
    """Spot preemptions resumed on spot (with --auto-resume); after them the replacement is
    on-demand."""
    max_restarts: int = Field(default=0, ge=0)
    """Re-runs allowed after the script fails (exit code not 0)."""
    restart_on_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(default_factory=list)
    """Exit codes (e.g. a known flaky NCCL failure) that restart without using up max_restarts
    (at most 10 such restarts in a row)."""
    capacity_wait: Duration | None = None
    """How long a job whose machine cannot be placed for lack of capacity waits `pending`,
    retrying with exponential backoff, before it ends no_capacity (default: it ends at once)."""
    hang_timeout: Duration | None = None
    """The agent's watchdog stops the script as hung after no progress (log line, checkpoint,
    Checkpointer.progress(), GPU at or above hang_gpu_util) for this long (default: no watchdog)."""
    hang_gpu_util: float = Field(default=5.0, ge=0, le=100)
    """GPU utilisation (percent, the busiest GPU) at or above which the GPU counts as progress."""
    max_hang_restarts: int = Field(default=1, ge=0)
    """Restarts allowed after the agent's watchdog declared the script hung."""
    max_total_duration: Duration | None = None
    """Cap on the job's wall-clock time over all attempts, from submission; reaching it stops
    the job gracefully (checkpoint saved) as time_limit."""


class NotifyConfig(_Section):
    """``[notify]``: where runctl sends a message when something happens to a job (see
    :mod:`runctl.clients.notify`): ended (with its cost), preempted, resumed, restarted, hung,
    a budget at ``[cost] warn_at`` and at its limit, a release that could not be verified.
    """

    urls: list[SecretStr] = Field(default_factory=list)
    """apprise URLs (slack://…, discord://…, ntfy://…, mailto://…, json://host/path); secrets:
    never shown, logged or stored in the ledger. `--notify URL` adds one for a job."""


class StorageConfig(_Section):
    """``[storage]``: where jobs keep checkpoints, logs and status, and how S3 transfers run.

    ``uri`` is ``s3://bucket/prefix`` (any S3-compatible store; ``endpoint_url`` for MinIO, R2,
    ...) or a local directory; unset, runctl uses ``<state dir>/storage``. Credentials come from
    boto3's chain only. Transfers: objects up to ``multipart_threshold`` go in one request, larger
    ones in ``part_size`` parts; ``max_concurrency`` requests run at once (memory in flight is at
    most about ``max_concurrency × part_size``); each request is tried ``max_attempts`` times.
    ``s3_checksums = false`` stops sending S3's ``x-amz-checksum-crc32`` (for stores that reject
    it, such as Backblaze B2 or s3proxy); runctl's own CRC-32 in metadata is kept either way.
    """

    uri: str | None = None
    """`s3://bucket/prefix` or a local directory jobs write to (default: `<state dir>/storage`)."""
    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, R2, a test server); default: boto3's."""
    region: str | None = None
    """Region of the bucket (found out on first use if unset)."""
    multipart_threshold: ByteSize = Field(default=64 * 1024**2, ge=1)
    """Objects up to this size go in one request."""
    part_size: ByteSize = Field(default=8 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    """Upload part size, 5MiB–5GiB; grown so a file needs at most 10,000 parts."""
    max_concurrency: int = Field(default=16, ge=1, le=256)
    """Requests in flight (memory: at most about this × `part_size`)."""
    max_attempts: int = Field(default=5, ge=1, le=20)
    """Tries per request on throttling, 5xx or a dropped connection."""
    s3_checksums: bool = True
    """Send S3's `x-amz-checksum-crc32`; `false` for stores that refuse it (B2, s3proxy)."""

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        """An ``s3://`` URI is checked on load (bucket naming rules), not at the first upload."""
        if value is not None:
            _storage_check("check_location", value)
        if value is not None and value.lower().startswith("s3://"):
            _storage_check("parse_s3_uri", value)
        return value


def _storage_check(name: str, value: str) -> str:
    """Run one of :mod:`runctl.core.s3uri`'s checks, as a pydantic validation error."""
    from runctl.core import s3uri as uri
    from runctl.core.errors import RunctlError

    try:
        getattr(uri, name)(value, arg="URI")
    except RunctlError as exc:
        raise ValueError(exc.message) from None
    return value


class RetryConfig(_Section):
    """``[retry]``: how cloud control-plane calls (AWS, RunPod) are retried, and how waits poll.

    A retryable failure (throttling, 5xx, a dropped connection) is tried up to ``max_attempts``
    times with full-jitter exponential backoff from ``initial_delay`` up to ``max_delay``, all
    within ``deadline``; waits (instance running, volume available) poll from ``poll_interval``
    backing off to ``poll_max_interval``. Smaller values fail fast on a flaky network; larger ones
    ride out a long outage. (S3 transfers have their own ``[storage] max_attempts``.)
    """

    max_attempts: int = Field(default=6, ge=1, le=50)
    """Attempts of a retryable cloud call (throttling, 5xx, a dropped connection)."""
    initial_delay: Duration = 0.5
    """First backoff delay (full-jitter exponential)."""
    max_delay: Duration = 20.0
    """Largest backoff delay."""
    deadline: Duration = 120.0
    """A retried call gives up within this long."""
    poll_interval: Duration = 1.0
    """First interval of a wait (instance running, volume available)."""
    poll_max_interval: Duration = 15.0
    """Largest interval a wait backs off to."""

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryConfig:
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}s) must not be less than initial_delay ({self.initial_delay}s)"
            )
        if self.poll_max_interval < self.poll_interval:
            raise ValueError(
                f"poll_max_interval ({self.poll_max_interval}s) must not be less than "
                f"poll_interval ({self.poll_interval}s)"
            )
        return self


class Config(_Section):
    """The whole configuration. Every section is optional."""

    aws: AwsConfig = Field(default_factory=AwsConfig)
    runpod: RunpodConfig = Field(default_factory=RunpodConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)


@dataclass
class LoadedConfig:
    """A validated config and where its layers came from."""

    config: Config
    files: list[Path] = field(default_factory=list)
    env_keys: list[str] = field(default_factory=list)


def load_config(
    path: Path | str | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Find, layer and validate the configuration (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    files: list[Path] = []

    user = user_config_path()
    if user.is_file():
        _merge(merged, origins, _read_toml(user), f"file {user}")
        files.append(user)
    project: Path | None
    if path is not None:
        project = Path(path).expanduser()
        if not project.is_file():
            raise ConfigError(
                f"config file {project} does not exist",
                path=str(project),
                hint="check the --config path, or run 'runctl init' to write one",
            )
    else:
        project = find_project_config(cwd)
    if project is not None:
        _merge(merged, origins, _read_toml(project), f"file {project}")
        files.append(project)

    env_layer, env_keys = _env_layer(environ)
    for (section, key), (var, value) in env_layer.items():
        if not isinstance(merged.setdefault(section, {}), dict):
            raise ConfigError(
                f"{origins[(section,)]}: {section!r} is a value, not a [{section}] table, so {var} "
                f"cannot set {section}.{key} in it",
                path=_file_of(origins[(section,)]),
                key=section,
                hint=f'write the section as a table: [{section}] with "key = value" lines under it',
            )
        merged[section][key] = value
        origins[(section, key)] = f"environment variable {var}"

    try:
        config = Config.model_validate(merged)
    except PydanticValidationError as exc:
        raise _config_error(exc, origins) from None
    return LoadedConfig(config=config, files=files, env_keys=env_keys)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: not UTF-8 text (byte {exc.start})",
            path=str(path),
            hint="save the file as UTF-8",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            path=str(path),
            hint="fix the syntax at that line (strings need quotes; tables are [section])",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}",
            path=str(path),
            hint="check that the file exists and is readable",
        ) from None


def _merge(
    into: dict[str, Any], origins: dict[tuple[str, ...], str], layer: dict[str, Any], source: str
) -> None:
    for section, body in layer.items():
        if isinstance(body, dict) and isinstance(into.get(section), dict):
            into[section].update(body)
        else:
            into[section] = dict(body) if isinstance(body, dict) else body
        origins[(section,)] = source
        if isinstance(body, dict):
            for key in body:
                origins[(section, key)] = source


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[tuple[str, str], tuple[str, Any]], list[str]]:
    layer: dict[tuple[str, str], tuple[str, Any]] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        sections = Config.model_fields
        if section not in sections:
            raise ConfigError(
                f"environment variable {var} names an unknown config section {section!r}"
                + _did_you_mean(section, sections),
                key=section,
                hint=f"unset {var}; sections are: {', '.join(sections)}",
            )
        model = sections[section].annotation
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if key not in fields:
            raise ConfigError(
                f"environment variable {var} names an unknown key {section}.{key}"
                + _did_you_mean(key, fields),
                key=f"{section}.{key}",
                hint=f"unset {var}; keys of [{section}] are: {', '.join(fields)}",
            )
        layer[(section, key)] = (var, _env_value(raw))
    return layer, sorted(v for v, _ in layer.values())


def _env_value(raw: str) -> Any:
    """Env values are strings; JSON lists/objects are decoded so list keys can be set too."""
    if raw.strip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _did_you_mean(word: str, choices: Mapping[str, Any] | list[str]) -> str:
    prefixed = [c for c in choices if c.startswith(word) or word.startswith(c)]
    close = prefixed[:1] or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        info = model.model_fields.get(str(part))
        annotation = getattr(info, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _file_of(source: str) -> str | None:
    return source[len("file ") :] if source.startswith("file ") else None


def _config_error(exc: PydanticValidationError, origins: dict[tuple[str, ...], str]) -> ConfigError:
    lines: list[str] = []
    first_key: str | None = None
    first_source: str | None = None
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        source = origins.get(loc[:2]) or origins.get(loc[:1]) or "defaults"
        first_key = first_key or key
        first_source = first_source or source
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            choices = list(parent.model_fields) if parent else []
            what = "section" if len(loc) == 1 else "key"
            fix = f"remove it{_did_you_mean(loc[-1], choices)}"
            if choices:
                fix += f"; valid {what}s here: {', '.join(choices)}"
            lines.append(f"{source}: unknown {what} {key!r}: {fix}")
        else:
            given = err.get("input")
            # a section's value or a table/list may hold a secret (`runpod = "<key>"`, [[runpod]]
            # with an api_key): echo only plain values of plain keys
            secret = key.endswith("api_key") or len(loc) == 1 or isinstance(given, dict | list)
            shown = "" if secret else f" (got {given!r})"
            lines.append(f"{source}: {key}: {err['msg']}{shown}")
    summary = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines)
    path = _file_of(first_source) if first_source else None
    return ConfigError(
        f"invalid configuration: {summary}",
        path=path,
        key=first_key,
        hint="edit the value named above; 'runctl config validate' re-checks, "
        "'runctl init' writes a commented example, docs/reference/config.md lists every key",
    )


def redacted_dump(config: Config) -> dict[str, Any]:
    """The config as plain JSON-able data with every secret masked."""
    return config.model_dump(mode="json")
