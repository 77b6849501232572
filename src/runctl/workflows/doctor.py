"""``runctl doctor``: check everything runctl depends on, and say how to fix what is wrong.

Each check gives one line — ``ok``, ``warn``, ``fail`` or ``skip`` — with a fix for anything
not ok. Decisions where the issue is silent:

* **Providers are optional.** No AWS credentials, or no RunPod key, is a *warning* ("not
  configured"): ``runctl local`` needs neither. Credentials that exist but are refused, an
  unreachable endpoint, or an S3 bucket that is configured but unusable are *failures*.
* **No network unless configured.** The STS call (``GetCallerIdentity``, through
  :func:`runctl.clients.aws.call`, one attempt, a short timeout) and the clock check
  run only when boto3 finds credentials, the storage check only when ``[storage] uri`` (or
  ``[aws] s3_bucket``) is set; a local-only user's ``doctor`` sends nothing anywhere.
* **Storage** is checked the way jobs use it: a write, read and delete of a small probe object
  through :func:`runctl.storage.open_storage`, after a ``HeadBucket`` with the short timeout so
  an unreachable store fails fast instead of waiting out the retry deadline.
* **Clock skew** is measured against the ``Date`` header of an HTTP response from the STS
  endpoint (any status will do); AWS rejects requests signed more than 5 minutes off, so
  > 60 s warns and > 300 s fails. An endpoint that cannot be reached skips the check.
* **Exit code**: 0 when nothing failed (warnings allowed); 78 when the configuration is
  invalid; else 1 when any check failed.
* **Extensible**: :data:`CHECKS` is the ordered list of check functions; a provider adds its own
  by appending a function that takes the :class:`Probe` and returns a :class:`Check`.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from runctl.core.config import Config, LoadedConfig, load_config
from runctl.core.errors import ExitCode, NotFoundError, RetryExhaustedError, RunctlError

Status = Literal["ok", "warn", "fail", "skip"]
SKEW_WARN_S = 60.0
SKEW_FAIL_S = 300.0
LOW_DISK_BYTES = 1 << 30


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: Status
    message: str
    fix: str | None = None
    exit_code: int | None = None  # for a failure: the documented code of that problem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """All checks, in order, and the exit code they add up to."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.checks if c.status == "fail"]
        if any(c.name == "config" for c in failed):
            return int(ExitCode.CONFIG)
        return int(ExitCode.FAILURE) if failed else int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "checks": [c.to_dict() for c in self.checks]}


@dataclass
class Probe:
    """What the checks share: the config (defaults if it did not load), the environment, and
    what earlier checks found out."""

    load: Callable[[], LoadedConfig]
    environ: Mapping[str, str]
    timeout: float
    config: Config = field(default_factory=Config)
    aws_region: str | None = None
    aws_configured: bool = False


def check_config(probe: Probe) -> Check:
    try:
        loaded = probe.load()
    except RunctlError as exc:
        return Check("config", "fail", exc.message, exc.hint, int(exc.exit_code))
    probe.config = loaded.config
    where = ", ".join(str(f) for f in loaded.files) or "built-in defaults only"
    env = f"; from the environment: {', '.join(loaded.env_keys)}" if loaded.env_keys else ""
    return Check("config", "ok", f"valid ({where}{env})")


def check_state_dir(probe: Probe) -> Check:
    from runctl.core.paths import ensure_state_dir

    try:
        directory = ensure_state_dir()
        marker = directory / f".doctor-{os.getpid()}"
        marker.write_bytes(b"ok")
        marker.unlink()
    except RunctlError as exc:
        return Check("state dir", "fail", exc.message, exc.hint, int(exc.exit_code))
    except OSError as exc:
        return Check(
            "state dir",
            "fail",
            f"cannot write in the state directory: {exc.strerror}",
            "fix its permissions, or set RUNCTL_STATE_DIR to a writable directory",
            int(ExitCode.CANT_CREATE),
        )
    free = shutil.disk_usage(directory).free
    if free < LOW_DISK_BYTES:
        return Check(
            "state dir",
            "warn",
            f"{directory}: only {free / (1 << 20):.0f} MiB free",
            "free disk space: logs and default checkpoints live here",
        )
    return Check("state dir", "ok", f"{directory} is writable ({free / (1 << 30):.1f} GiB free)")


def check_ledger(probe: Probe) -> Check:
    from runctl.core.ledger import Ledger

    try:
        with Ledger.open_default() as ledger:
            ledger.check_writable()  # a ledger that reads fine but refuses writes fails every run
            integrity = ledger.integrity_check()
            live = [r for r in ledger.list_resources(include_gone=False) if r.provider != "local"]
            running = ledger.list_jobs(states=("pending", "running"))
    except RunctlError as exc:
        return Check("ledger", "fail", exc.message, exc.hint, int(exc.exit_code))
    if integrity != "ok":
        return Check(
            "ledger",
            "fail",
            f"{ledger.path} failed SQLite's integrity check: {integrity}",
            f"copy {ledger.path} aside and restore a backup; runctl never overwrites it",
            int(ExitCode.STATE),
        )
    detail = f"{ledger.path}: {len(running)} job(s) running, {len(live)} cloud resource(s) not released"
    return Check("ledger", "ok", detail)


def check_aws(probe: Probe) -> Check:
    """Credentials through boto3's own chain; then one short STS call to prove them."""
    from runctl.clients import aws

    try:
        credentials = aws.credentials()
        default_region = aws.default_region()
    except RunctlError as error:  # a broken ~/.aws/config, an unknown AWS_PROFILE
        return Check("aws", "fail", error.message, error.hint or "check ~/.aws/config and AWS_PROFILE")
    if credentials is None:
        return Check(
            "aws",
            "warn",
            "not configured: no AWS credentials found",
            "only needed for AWS jobs: run 'aws configure', set AWS_PROFILE, or use an instance role",
        )
    probe.aws_configured = True
    region = probe.config.aws.region or default_region
    if not region:
        return Check(
            "aws",
            "warn",
            "credentials found, but no region",
            "set [aws] region in .runctl.toml, or AWS_REGION in the environment",
        )
    probe.aws_region = region
    from runctl.core.retry import RetryPolicy

    try:
        identity = aws.call(
            aws.client("sts", region, timeout=probe.timeout).get_caller_identity,
            operation="sts get_caller_identity",
            policy=RetryPolicy(max_attempts=1, deadline=None, name="doctor"),
        )
    except RunctlError as exc:
        cause = _cause(exc)
        return Check("aws", "fail", f"region {region}: {cause}", cause.hint or exc.hint, int(exc.exit_code))
    return Check("aws", "ok", f"account {identity.get('Account')} as {identity.get('Arn')}, region {region}")


def check_runpod(probe: Probe) -> Check:
    if probe.config.runpod.api_key is not None:
        return Check("runpod", "ok", "API key set (in the configuration)")
    if probe.environ.get("RUNPOD_API_KEY"):
        return Check("runpod", "ok", "API key set (RUNPOD_API_KEY)")
    return Check(
        "runpod",
        "warn",
        "not configured: no API key",
        "only needed for RunPod jobs: set the RUNPOD_API_KEY environment variable (keep keys out of git)",
    )


def storage_uri(config: Config) -> str | None:
    """Where jobs keep checkpoints and logs, if configured: ``[storage] uri``, else the
    ``[aws] s3_bucket`` and ``s3_prefix``; None means the default, on this machine."""
    if config.storage.uri:
        return config.storage.uri
    if config.aws.s3_bucket:
        return f"s3://{config.aws.s3_bucket}/{config.aws.s3_prefix}"
    return None


def check_storage(probe: Probe) -> Check:
    """A bucket probe with a short timeout (fail fast), then a write/read/delete round trip
    through :func:`runctl.storage.open_storage`: the path jobs use, so every setting counts."""
    from runctl.storage import is_s3_uri, open_storage, parse_s3_uri

    uri = storage_uri(probe.config)
    if uri is None:
        return Check("storage", "skip", "no storage configured (jobs keep their files in the state dir)")
    key = f"doctor/probe-{socket.gethostname()}-{os.getpid()}.json"
    try:
        if is_s3_uri(uri):
            _probe_bucket(parse_s3_uri(uri, arg="storage URI").bucket, probe)
        store = open_storage(uri, probe.config.storage)
        store.write_json(key, {"probe": key})
        if store.read_json(key) != {"probe": key}:
            return Check("storage", "fail", f"{uri}: a written object read back differently", _STORAGE_FIX)
        store.delete([key])
    except RunctlError as exc:
        cause = _cause(exc)
        fix = cause.hint or _STORAGE_FIX
        if is_s3_uri(uri) and isinstance(cause, NotFoundError):
            fix = f"create the bucket (aws s3 mb s3://{parse_s3_uri(uri).bucket}) or fix [storage] uri"
        return Check("storage", "fail", f"{uri}: {cause.message}", fix, int(exc.exit_code))
    return Check("storage", "ok", f"{uri} is writable and readable")


_STORAGE_FIX = "check [storage] uri / endpoint_url, and that your credentials may read and write there"


def _probe_bucket(bucket: str, probe: Probe) -> None:
    from runctl.clients import aws
    from runctl.core.retry import RetryPolicy

    config = probe.config.storage
    s3 = aws.client("s3", config.region, timeout=probe.timeout, endpoint_url=config.endpoint_url)
    aws.call(
        s3.head_bucket,
        operation=f"s3 head_bucket {bucket}",
        policy=RetryPolicy(max_attempts=1, deadline=None, name="doctor"),
        Bucket=bucket,
    )


def _cause(exc: RunctlError) -> RunctlError:
    """The error behind a single attempt that ran out (doctor tries each call once)."""
    if isinstance(exc, RetryExhaustedError) and isinstance(exc.last_error, RunctlError):
        return exc.last_error
    return exc


def skew_check(offset: float | None, url: str) -> Check:
    """The clock line for a measured offset."""
    if offset is None:
        return Check("clock", "skip", f"{url} could not be reached to compare clocks")
    fix = "turn on time sync (timedatectl set-ntp true, or chrony/ntpd)"
    ahead = "behind" if offset > 0 else "ahead of"
    text = f"this machine is {abs(offset):.0f}s {ahead} {url}"
    if abs(offset) > SKEW_FAIL_S:
        return Check("clock", "fail", f"{text}: AWS rejects requests signed >5 min off", fix)
    if abs(offset) > SKEW_WARN_S:
        return Check("clock", "warn", text, fix)
    return Check("clock", "ok", f"within {max(abs(offset), 1):.0f}s of {url}")


def check_clock(probe: Probe) -> Check:
    if not probe.aws_configured:
        return Check("clock", "skip", "AWS not configured: nothing to compare with")
    from runctl.clients import aws
    from runctl.clients.clock import server_clock_offset

    url = aws.sts_endpoint(probe.aws_region or "us-east-1", probe.environ)
    return skew_check(server_clock_offset(url, timeout=probe.timeout), url)


CHECKS: list[Callable[[Probe], Check]] = [
    check_config,
    check_state_dir,
    check_ledger,
    check_aws,
    check_runpod,
    check_storage,
    check_clock,
]


def diagnose(
    config_path: Path | str | None = None,
    *,
    load: Callable[[], LoadedConfig] | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Report:
    """Run every check in :data:`CHECKS` and return the report (never raises a RunctlError)."""
    probe = Probe(
        load=load or (lambda: load_config(config_path)),
        environ=os.environ if environ is None else environ,
        timeout=timeout,
    )
    return Report([check(probe) for check in CHECKS])
