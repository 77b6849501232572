"""Prometheus metrics of runctl (names from the user's plan, ``runctl_`` prefix).

Metrics live in the process-wide default registry so one ``/metrics`` endpoint, textfile or
push exports them all. This module is imported lazily (prometheus-client costs import time that
``runctl --help`` must not pay).
"""

from __future__ import annotations

from prometheus_client import Counter

RETRIES = Counter("runctl_retries_total", "Retries of failed operations, by operation", ["operation"])
JOBS_STARTED = Counter("runctl_training_jobs_started_total", "Training jobs started", ["provider"])
JOBS_COMPLETED = Counter("runctl_training_jobs_completed_total", "Training jobs that succeeded", ["provider"])
JOBS_FAILED = Counter(
    "runctl_training_jobs_failed_total",
    "Training jobs that did not succeed, by outcome",
    ["provider", "outcome"],
)
