"""Prometheus metrics of runctl (names from the user's plan, ``runctl_`` prefix), and the three
ways they leave the process.

Two kinds of metric, decided here:

* **Counters and histograms of what this process did** (jobs it started and ended, retries,
  cloud API calls): ordinary prometheus-client metrics, counted from the process start; and on
  a machine, the agent's last GPU reading (``runctl_gpu_utilisation_percent``).
* **Gauges of the ledger** (active resources, cost so far, spend rate) and the allocation-time
  histogram are computed from the ledger at collection time by :class:`LedgerCollector`, so
  every export shows the truth of the whole ledger — every runctl process's jobs, not only this
  one's — and nothing has to be kept in memory. ``runctl_resource_allocation_seconds`` is the
  time from a resource's ``intent`` row to its first billable (running) interval. The per-job
  cost series ``runctl_cost_accumulated_usd`` exists while the job spends and for
  :data:`RECENT_S` after its last spending ends, so series do not grow without bound; the
  all-time figure per provider is ``runctl_cost_total_usd``. The job label is ``job_id``
  because Prometheus reserves ``job`` for the scrape target (and the Pushgateway for its group).

Every metric is registered in the process-wide default registry (what ``/metrics`` serves, with
the process and GC collectors) *and* in :data:`RUNCTL_REGISTRY`, which holds runctl's metrics
only: that one is written to the node_exporter textfile and pushed to the Pushgateway, where
``process_*`` series would clash with the exporter's own.

Ways out (see :func:`serve`, :func:`write_textfile`, :func:`push`, :func:`export_on_exit`):
``--metrics-port`` serves ``/metrics`` while a long command runs; ``[monitoring]
textfile_dir`` gets ``runctl.prom`` replaced atomically when a command that touched metrics
exits (one file, last writer wins: two files with the same series would make node_exporter
reject both); ``[monitoring] pushgateway_url`` gets the same metrics pushed, grouped by
``job="runctl"`` and ``instance=<host>``.

This module imports prometheus-client at import time; it is itself imported lazily (``runctl
--help`` must not pay for it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from runctl.core.config import MonitoringConfig
    from runctl.core.ledger import Ledger

__all__ = [
    "CLOUD_API_CALLS",
    "JOBS_COMPLETED",
    "JOBS_FAILED",
    "JOBS_STARTED",
    "LEDGER_COLLECTOR",
    "PUSH_JOB",
    "RECENT_S",
    "RETRIES",
    "RUNCTL_REGISTRY",
    "TEXTFILE_NAME",
    "LedgerCollector",
    "export_on_exit",
    "ledger_metrics",
    "observe_api_call",
    "push",
    "serve",
    "use_ledger",
    "write_textfile",
]

log = logging.getLogger("runctl.metrics")

#: runctl's metrics only: what the textfile and the Pushgateway get.
RUNCTL_REGISTRY = CollectorRegistry(auto_describe=True)
TEXTFILE_NAME = "runctl.prom"
PUSH_JOB = "runctl"
#: How long a finished job's cost series stays exported after its last spending.
RECENT_S = 24 * 3600.0
#: Seconds from intent to running: milliseconds for a local process, minutes for a cloud machine.
ALLOCATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


def _both(collector: Any) -> Any:
    REGISTRY.register(collector)
    RUNCTL_REGISTRY.register(collector)
    return collector


RETRIES = _both(
    Counter(
        "runctl_retries_total", "Retries of failed operations, by operation", ["operation"], registry=None
    )
)
JOBS_STARTED = _both(
    Counter("runctl_training_jobs_started_total", "Training jobs started", ["provider"], registry=None)
)
JOBS_COMPLETED = _both(
    Counter(
        "runctl_training_jobs_completed_total", "Training jobs that succeeded", ["provider"], registry=None
    )
)
JOBS_FAILED = _both(
    Counter(
        "runctl_training_jobs_failed_total",
        "Training jobs that did not succeed, by outcome",
        ["provider", "outcome"],
        registry=None,
    )
)
GPU_UTILISATION = _both(
    Gauge(
        "runctl_gpu_utilisation_percent",
        "GPU utilisation on this machine as the agent last read it, by GPU index",
        ["gpu"],
        registry=None,
    )
)
CLOUD_API_CALLS = _both(
    Histogram(
        "runctl_cloud_api_calls",
        "Cloud API calls: seconds per attempt, by service, operation and outcome "
        "(ok, or the runctl error class)",
        ["service", "operation", "outcome"],
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf")),
        registry=None,
    )
)


def observe_api_call(service: str, operation: str, outcome: str, seconds: float) -> None:
    """Record one attempt of a cloud API call (providers call this at their boundary)."""
    CLOUD_API_CALLS.labels(service=service, operation=operation, outcome=outcome).observe(seconds)


class LedgerCollector(Collector):
    """Gauges and the allocation histogram, computed from the ledger on every collection."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # computed per collection; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        with self._lock:
            ledger = self.ledger
        if ledger is None:
            return
        yield from ledger_metrics(ledger, now=time.time())


def ledger_metrics(ledger: Ledger, *, now: float) -> list[Any]:
    """The ledger-derived metric families at time ``now``."""
    from runctl.core.cost import charges

    resources = {r.id: r for r in ledger.list_resources()}
    active = GaugeMetricFamily(
        "runctl_active_resources",
        "Resources that exist or may exist (not yet released), by provider, kind and state",
        labels=["provider", "kind", "state"],
    )
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for resource in resources.values():
        if not resource.is_gone:
            counts[(resource.provider, resource.kind, resource.state)] += 1
    for labels, count in sorted(counts.items()):
        active.add_metric(list(labels), count)

    per_job: dict[tuple[str, str], float] = defaultdict(float)
    recent_jobs: set[tuple[str, str]] = set()
    totals: dict[str, float] = defaultdict(float)
    rates: dict[str, float] = defaultdict(float)
    first_billable: dict[str, float] = {}
    for charge in charges(ledger.usage(), resources, now=now):  # the providers' billing rules
        provider = charge.provider
        cost = charge.usd()
        totals[provider] += cost
        if charge.job_id:
            key = (provider, charge.job_id)
            per_job[key] += cost
            if charge.open or now - charge.ended_at < RECENT_S:
                recent_jobs.add(key)
        if charge.open:
            rates[provider] += charge.rate_usd_per_hour
        first = first_billable.get(charge.resource_id)
        if first is None or charge.started_at < first:
            first_billable[charge.resource_id] = charge.started_at

    accumulated = GaugeMetricFamily(
        "runctl_cost_accumulated_usd",
        f"Dollars spent so far per job (jobs spending now or in the last {RECENT_S / 3600:g} h)",
        labels=["provider", "job_id"],
    )
    for key in sorted(recent_jobs):
        accumulated.add_metric(list(key), per_job[key])
    total = GaugeMetricFamily(
        "runctl_cost_total_usd", "Dollars spent over the whole ledger, by provider", labels=["provider"]
    )
    rate = GaugeMetricFamily(
        "runctl_cost_rate_usd_per_hour",
        "What the resources billing now cost per hour, by provider",
        labels=["provider"],
    )
    for provider in sorted(totals):
        total.add_metric([provider], totals[provider])
        rate.add_metric([provider], rates.get(provider, 0.0))

    return [active, accumulated, total, rate, _allocation(resources, first_billable)]


def _allocation(resources: dict[str, Any], first_billable: dict[str, float]) -> HistogramMetricFamily:
    observed: dict[tuple[str, str], list[float]] = defaultdict(list)
    for resource_id, started in first_billable.items():
        resource = resources.get(resource_id)
        if resource is not None:
            observed[(resource.provider, resource.kind)].append(max(0.0, started - resource.created_at))
    family = HistogramMetricFamily(
        "runctl_resource_allocation_seconds",
        "Seconds from a resource's intent to its first billable (running) state",
        labels=["provider", "kind"],
    )
    for labels, values in sorted(observed.items()):
        buckets = [
            (floatToGoString(bound), sum(1 for v in values if v <= bound)) for bound in ALLOCATION_BUCKETS
        ]
        family.add_metric(list(labels), buckets, sum(values))
    return family


LEDGER_COLLECTOR = _both(LedgerCollector())


def use_ledger(ledger: Ledger | None) -> None:
    """Export the gauges of ``ledger`` from now on (None: stop exporting ledger gauges)."""
    with LEDGER_COLLECTOR._lock:
        LEDGER_COLLECTOR.ledger = ledger


def serve(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; ``server.server_port`` is the port.

    Raises :class:`ValidationError` when the port cannot be bound.
    """
    from prometheus_client import start_http_server

    from runctl.core.errors import ValidationError

    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        raise ValidationError(
            f"cannot serve metrics on {addr}:{port}: {exc.strerror}",
            hint="choose another --metrics-port (0 picks a free one), or stop what uses it",
        ) from None
    return server


def write_textfile(directory: Path) -> Path:
    """Write runctl's metrics to ``directory/runctl.prom`` atomically (temp file + rename), 0600
    like every file runctl creates (a collector reading it must run as the same user)."""
    from prometheus_client import generate_latest

    from runctl.core.paths import make_private_dirs, write_private

    make_private_dirs(directory)
    return write_private(directory / TEXTFILE_NAME, generate_latest(RUNCTL_REGISTRY))


def push(url: str, *, timeout: float = 5.0) -> None:
    """Push runctl's metrics to a Pushgateway, replacing this host's previous push."""
    from prometheus_client import push_to_gateway

    push_to_gateway(
        url,
        job=PUSH_JOB,
        registry=RUNCTL_REGISTRY,
        grouping_key={"instance": socket.gethostname()},
        timeout=timeout,
    )


def export_on_exit(monitoring: MonitoringConfig) -> None:
    """Write the textfile and push, as configured. Failures are logged, never raised: metrics
    must not change the outcome or exit code of the command that produced them."""
    if monitoring.textfile_dir is not None:
        try:
            path = write_textfile(monitoring.textfile_dir.expanduser())
            log.debug("wrote metrics to %s", path, extra={"operation": "metrics.textfile"})
        except OSError as exc:
            log.warning(
                "could not write metrics to %s: %s",
                monitoring.textfile_dir,
                exc,
                extra={"operation": "metrics.textfile"},
            )
    if monitoring.pushgateway_url:
        try:
            push(monitoring.pushgateway_url)
            log.debug("pushed metrics to %s", monitoring.pushgateway_url)
        except Exception as exc:  # urllib errors, refused connections, bad URLs
            log.warning(
                "could not push metrics to %s: %s",
                monitoring.pushgateway_url,
                exc,
                extra={"operation": "metrics.push"},
            )
