"""What the chaos tests check after each disaster: what is alive in the clouds that the ledger
does not account for (a leak), whether the CLI failed cleanly, and whether input changed state."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from runctl.core.ledger import Ledger
from tests.conftest import CliResult
from tests.support.aws import boto
from tests.support.fake_runpod import FakeRunpod

#: Exit codes a cloud command may end with when the cloud misbehaves (docs/reference/exit-codes.md).
CLOUD_FAILURE_CODES = frozenset({69, 75, 80})
ALIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]


def live_cloud_ids(ledger: Ledger, provider: str) -> set[str]:
    return {r.cloud_id for r in ledger.list_resources(provider=provider, include_gone=False) if r.cloud_id}


def aws_alive(moto_url: str) -> dict[str, str]:
    """Every billable thing in the moto region: cloud id → owning cloud id (a root volume is
    owned by its instance; everything else owns itself)."""
    ec2 = boto("ec2", moto_url)
    alive: dict[str, str] = {}
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ALIVE_INSTANCE_STATES}]
    )["Reservations"]
    for reservation in reservations:
        for instance in reservation["Instances"]:
            alive[instance["InstanceId"]] = instance["InstanceId"]
    for volume in ec2.describe_volumes()["Volumes"]:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        attached = [a["InstanceId"] for a in volume.get("Attachments", [])]
        root = tags.get("runctl:kind") == "root-volume" and attached
        alive[volume["VolumeId"]] = attached[0] if root else volume["VolumeId"]
    snapshots = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:runctl:managed", "Values": ["true"]}]
    )["Snapshots"]
    for snapshot in snapshots:
        alive[snapshot["SnapshotId"]] = snapshot["SnapshotId"]
    return alive


def aws_leaks(moto_url: str, ledger: Ledger | None = None) -> set[str]:
    """Alive in moto, not accounted for by a live ledger row: what 'leaked' means."""
    known = live_cloud_ids(ledger or Ledger.open_default(), "aws")
    return {cloud_id for cloud_id, owner in aws_alive(moto_url).items() if owner not in known}


def runpod_leaks(fake: FakeRunpod, ledger: Ledger | None = None) -> set[str]:
    """Pods RunPod still bills for that no live ledger row accounts for."""
    known = live_cloud_ids(ledger or Ledger.open_default(), "runpod")
    return {p.id for p in fake.live_pods()} - known


def assert_clean_failure(result: CliResult, allowed: frozenset[int] | set[int]) -> None:
    """A failed command: a documented exit code, an ``error:`` line, a hint, no traceback."""
    assert result.returncode in allowed, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "error:" in result.stderr, result.stderr[-2000:]


def no_traceback(result: CliResult) -> CliResult:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    return result


def ledger_dump(path: Path) -> tuple[bytes, list[str]]:
    """The ledger file's bytes and its rows as SQL (both must survive bad input unchanged)."""
    if not path.exists():
        return b"", []
    data = path.read_bytes()
    conn = sqlite3.connect(path)
    try:
        rows = list(conn.iterdump())
    finally:
        conn.close()
    return data, rows


def integrity(path: Path) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
