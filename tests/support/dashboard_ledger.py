"""A known ledger for the dashboard's tests: finished jobs whose usage lies at fixed times in
the past (written through the Ledger, then their intervals moved with plain SQL), so every
figure the dashboard shows can be compared with ``cost report``'s."""

from __future__ import annotations

import os
import sqlite3
import time

from runctl.core.ledger import Job, Ledger
from runctl.providers.local import process_cloud_id

#: A job name / log line that would run script if a page inserted it unescaped.
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def machine(
    ledger: Ledger,
    job: Job | None,
    provider: str,
    kind: str,
    rate: float,
    span: tuple[float, float] | None,
    **spec: object,
) -> str:
    """A resource of ``job`` that billed ``rate`` over ``span`` (None: still running, opened now)."""
    zone = str(spec.pop("zone", "")) or None
    job_id = job.id if job else None
    intent = ledger.record_intent(provider=provider, kind=kind, job_id=job_id, spec=spec, zone=zone)
    cloud_id = process_cloud_id(os.getpid()) if kind == "process" else f"c-{intent.id}"
    ledger.mark_created(intent.id, cloud_id=cloud_id, state="running", billable=True, rate_usd_per_hour=rate)
    if span is not None:
        ledger.transition(intent.id, "terminated", billable=False)
        with sqlite3.connect(ledger.path) as conn:
            conn.execute(
                "UPDATE usage SET started_at = ?, ended_at = ? WHERE resource_id = ?", (*span, intent.id)
            )
    return intent.id


def known_ledger(ledger: Ledger) -> dict[str, str]:
    """Four finished jobs, all in the past: an AWS spot run across midnight that was preempted,
    a RunPod run, a local run, and a 30 s AWS run billed its 60 s minimum; two owners."""
    day = time.time() // 86400 * 86400 - 2 * 86400  # midnight UTC, two days ago
    hour = 3600.0
    jobs = {}
    outcomes = {"vision.resnet": "preempted", "nlp.bert": "succeeded", "scratch": "succeeded",
                "vision.tiny": "succeeded"}  # fmt: skip
    for name in outcomes:
        jobs[name] = ledger.create_job(name=name, provider="aws", script="train.py")
    ec2 = {"instance_type": "g5.xlarge", "billing_minimum_s": 60.0}
    machine(ledger, jobs["vision.resnet"], "aws", "instance", 3.0, (day - 2 * hour, day + 3 * hour),
             market="spot", zone="us-east-1a", **ec2)  # fmt: skip
    machine(ledger, jobs["nlp.bert"], "runpod", "pod", 1.2, (day + 10 * hour, day + 12 * hour),
             gpu_type="A100")  # fmt: skip
    machine(ledger, jobs["scratch"], "local", "process", 0.5, (day + 26 * hour, day + 27 * hour))
    machine(ledger, jobs["vision.tiny"], "aws", "instance", 2.0, (day + 5 * hour, day + 5 * hour + 30),
             market="on-demand", zone="us-east-1b", **ec2)  # fmt: skip
    for name, state in outcomes.items():
        ledger.finish_job(jobs[name].id, state)
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE jobs SET host = 'alice-laptop' WHERE id = ?", (jobs["nlp.bert"].id,))
        conn.execute("UPDATE jobs SET ended_at = ? WHERE id = ?", (day + 3 * hour, jobs["vision.resnet"].id))
    return {name: job.id for name, job in jobs.items()}
