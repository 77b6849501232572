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
``1d``). Sizes (``[storage]``) accept bytes (``1048576``) or a number with a unit
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
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AwsConfig(_Section):
    """``[aws]``: EC2, EBS and S3. Credentials come from boto3's chain, never from here."""

    region: str | None = None
    default_instance_type: str = "g5.xlarge"
    default_ami: str | None = None
    use_spot: bool = False
    spot_max_price: PositiveFloat | None = None
    fallback_to_on_demand: bool = True
    iam_instance_profile: str | None = None
    key_name: str | None = None
    subnet_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    root_volume_gb: PositiveInt = 100
    s3_bucket: str | None = None
    s3_prefix: str = "runctl"
    max_running_instances: PositiveInt = 10

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        """A bad bucket name is a config error on load, not a failure at the first upload."""
        return value if value is None else _storage_check("validate_bucket", value)


class RunpodConfig(_Section):
    """``[runpod]``: the GraphQL API. The key may also come from ``RUNPOD_API_KEY``."""

    api_key: SecretStr | None = None
    api_url: str = "https://api.runpod.io"
    default_gpu: str = "NVIDIA GeForce RTX 4090"
    gpu_count: PositiveInt = 1
    cloud_type: Literal["secure", "community", "all"] = "secure"
    image: str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    container_disk_gb: PositiveInt = 50
    volume_gb: int = Field(default=0, ge=0)


class LocalConfig(_Section):
    """``[local]``: how ``runctl local`` runs a script on this machine."""

    grace_period: Duration = 30.0
    max_duration: Duration | None = None
    python: str | None = None
    use_uv: bool = True
    rate_usd_per_hour: NonNegativeFloat = 0.0
    cgroup_root: Path | None = None  # a delegated cgroup2 directory: one cgroup per job
    max_log_size: ByteSize | None = None  # rotate the job's log at this size (one .1 kept)

    @field_validator("max_log_size")
    @classmethod
    def _positive_size(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("max_log_size must be greater than 0 (e.g. '100MiB'), or unset")
        return value


class CheckpointConfig(_Section):
    """``[checkpoint]``: where checkpoints go and how many are kept."""

    dir: Path | None = None
    keep_last_n: PositiveInt | None = None
    resume: bool = True


class MonitoringConfig(_Section):
    """``[monitoring]``: metrics and logs."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"  # address /metrics binds; "0.0.0.0" for a remote Prometheus
    textfile_dir: Path | None = None
    pushgateway_url: str | None = None
    log_format: Literal["text", "json"] = "text"
    heartbeat_interval: Duration = 5.0


class CostConfig(_Section):
    """``[cost]``: budgets that refuse a launch before it overspends (see :mod:`runctl.core.budget`).

    ``budget_usd`` caps the spend of a calendar ``budget_period`` (UTC); ``max_hourly_usd`` the
    rate of everything running; ``max_cost_usd`` each job (a running job is stopped gracefully at
    it); ``warn_at`` is the fraction of a limit that warns. Prices older than
    ``price_stale_days`` are shown as stale; ``rate_refresh_interval`` is how often a remote
    job's controller re-reads the price of its machine (spot prices move).
    """

    budget_usd: PositiveFloat | None = None
    budget_period: Literal["day", "week", "month"] = "month"
    max_hourly_usd: PositiveFloat | None = None
    max_cost_usd: PositiveFloat | None = None
    warn_at: float = Field(default=0.8, gt=0, le=1)
    price_stale_days: PositiveInt = 30
    rate_refresh_interval: Duration = 600.0


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
    endpoint_url: str | None = None
    region: str | None = None
    multipart_threshold: ByteSize = Field(default=64 * 1024**2, ge=1)
    part_size: ByteSize = Field(default=8 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    max_concurrency: int = Field(default=16, ge=1, le=256)
    max_attempts: int = Field(default=5, ge=1, le=20)
    s3_checksums: bool = True

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        """An ``s3://`` URI is checked on load (bucket naming rules), not at the first upload."""
        if value is not None and value.lower().startswith("s3://"):
            _storage_check("parse_s3_uri", value)
        return value


def _storage_check(name: str, value: str) -> str:
    """Run one of :mod:`runctl.storage.uri`'s checks, as a pydantic validation error."""
    from runctl.core.errors import RunctlError
    from runctl.storage import uri

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
    initial_delay: Duration = 0.5
    max_delay: Duration = 20.0
    deadline: Duration = 120.0
    poll_interval: Duration = 1.0
    poll_max_interval: Duration = 15.0

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
    if path is not None:
        project: Path | None = Path(path).expanduser()
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
        merged.setdefault(section, {})[key] = value
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
        fields = sections[section].annotation.model_fields  # type: ignore[union-attr]
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
    path = first_source[len("file ") :] if first_source and first_source.startswith("file ") else None
    return ConfigError(
        f"invalid configuration: {summary}",
        path=path,
        key=first_key,
        hint="edit the value named above; 'runctl config validate' re-checks, "
        "'runctl init' writes a commented example",
    )


def redacted_dump(config: Config) -> dict[str, Any]:
    """The config as plain JSON-able data with every secret masked."""
    return config.model_dump(mode="json")
