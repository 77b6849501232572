"""Metrics: /metrics scraped during a real `runctl local` run, the textfile written atomically
at exit, the Pushgateway protocol, ledger gauges, and cloud API call timings against moto."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from runctl.core import metrics
from runctl.core.config import MonitoringConfig
from runctl.core.ledger import Ledger
from tests.conftest import EXAMPLES
from tests.support.fault_proxy import FaultProxy, ec2_error

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> Samples | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return parse(response.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return None


def start_local(port: int, textfile_dir: Path, *script_args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RUNCTL_LOCAL__RATE_USD_PER_HOUR": "36",  # one cent a second: cost visibly moves
        "RUNCTL_MONITORING__TEXTFILE_DIR": str(textfile_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "runctl", "local", str(EXAMPLES / "train_numpy.py"),
         "--metrics-port", str(port), "--", *script_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


def scrape_until(port: int, ready, timeout: float = 30) -> Samples:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(port)
        if samples is not None and ready(samples):
            return samples
        time.sleep(0.1)
    raise AssertionError("/metrics never showed the expected samples")


def test_scrape_during_a_real_local_run_then_textfile_at_exit(tmp_path: Path) -> None:
    port, textfile_dir = free_port(), tmp_path / "textfile"
    proc = start_local(port, textfile_dir, "--steps", "100000", "--sleep", "0.01")
    try:
        first = scrape_until(
            port, lambda s: value(s, "runctl_training_jobs_started_total", provider="local") == 1
        )
        assert value(first, "runctl_training_jobs_completed_total", provider="local") in (None, 0)
        running = {"provider": "local", "kind": "process", "state": "running"}
        assert value(first, "runctl_active_resources", **running) == 1
        assert value(first, "runctl_cost_rate_usd_per_hour", provider="local") == 36
        assert value(first, "runctl_resource_allocation_seconds_count", provider="local", kind="process") == 1
        job_id = next(dict(k[1])["job_id"] for k in first if k[0] == "runctl_cost_accumulated_usd")
        cost_first = value(first, "runctl_cost_accumulated_usd", provider="local", job_id=job_id)
        time.sleep(0.5)
        second = scrape(port)
        assert second is not None
        cost_second = value(second, "runctl_cost_accumulated_usd", provider="local", job_id=job_id)
        assert cost_second - cost_first >= 0.004  # 0.5 s at $0.01/s

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert scrape(port) is None  # the server went away with the command

    final = parse((textfile_dir / "runctl.prom").read_text())
    assert value(final, "runctl_training_jobs_started_total", provider="local") == 1
    assert value(final, "runctl_training_jobs_failed_total", provider="local", outcome="interrupted") == 1
    assert value(final, "runctl_training_jobs_completed_total", provider="local") is None
    assert value(final, "runctl_cost_rate_usd_per_hour", provider="local") == 0
    assert value(final, "runctl_cost_accumulated_usd", provider="local", job_id=job_id) > cost_second
    assert not any(k[0].startswith("process_") for k in final)  # would clash with node_exporter's
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["runctl.prom"]  # no temp files left


def test_completed_run_counts_in_the_textfile(tmp_path: Path) -> None:
    textfile_dir = tmp_path / "textfile"
    proc = start_local(free_port(), textfile_dir, "--steps", "20")
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    final = parse((textfile_dir / "runctl.prom").read_text())
    assert value(final, "runctl_training_jobs_completed_total", provider="local") == 1
    assert value(final, "runctl_training_jobs_failed_total", provider="local", outcome="failed") is None


def test_a_busy_metrics_port_is_an_error_before_the_job_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_local(port, tmp_path / "tf", "--steps", "5")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 65
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err.decode()
    with Ledger.open_default() as ledger:
        assert ledger.list_jobs() == []  # nothing was started


class _BigFamily:
    """A collector with a large output, so a torn write would show."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("runctl_test_padding", "padding", labels=["i"])
        for i in range(2000):
            family.add_metric([str(i)], i)
        yield family


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    big = _BigFamily()
    metrics.RUNCTL_REGISTRY.register(big)  # type: ignore[arg-type]
    try:
        path = metrics.write_textfile(tmp_path)
        original = path.read_bytes()
        expected = parse(original.decode())
        assert len(expected) >= 2000
        torn, reads, writes = [], 0, [0]
        stop = threading.Event()

        def writer() -> None:
            while not stop.is_set():
                metrics.write_textfile(tmp_path)
                writes[0] += 1

        with path.open("rb") as before:  # a reader that opened the file before the rewrites
            thread = threading.Thread(target=writer)
            thread.start()
            deadline = time.monotonic() + 20  # a loaded machine is slow; a fast one stops early
            while (reads < 30 or writes[0] < 30) and time.monotonic() < deadline:
                seen = parse(path.read_text())
                reads += 1
                if seen.keys() != expected.keys():
                    torn.append(len(seen))
            stop.set()
            thread.join()
            # replaced, never rewritten in place: the old file is unlinked and still whole
            assert os.fstat(before.fileno()).st_nlink == 0
            assert before.read() == original
    finally:
        metrics.RUNCTL_REGISTRY.unregister(big)  # type: ignore[arg-type]
    assert reads >= 5 and writes[0] >= 5 and torn == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runctl.prom"]


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A loopback server speaking the Pushgateway's push protocol; records (method, path, body)."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(("PUT", self.path, body))
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_export_on_exit_pushes_runctl_metrics_only(pushgateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, received = pushgateway
    metrics.JOBS_STARTED.labels(provider="pushtest").inc()
    metrics.export_on_exit(MonitoringConfig(pushgateway_url=url, textfile_dir=tmp_path))
    [(method, path, body)] = received
    assert method == "PUT"
    assert path == f"/metrics/job/runctl/instance/{socket.gethostname()}"
    pushed = parse(body.decode())
    assert value(pushed, "runctl_training_jobs_started_total", provider="pushtest") == 1
    assert not any(name.startswith(("process_", "python_")) for name, _ in pushed)
    assert value(parse((tmp_path / "runctl.prom").read_text()), "runctl_training_jobs_started_total",
                 provider="pushtest") == 1  # fmt: skip


def test_an_unreachable_pushgateway_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    metrics.export_on_exit(MonitoringConfig(pushgateway_url=f"http://127.0.0.1:{free_port()}"))
    assert any("could not push metrics" in r.getMessage() for r in caplog.records)


def test_ledger_gauges_and_allocation_histogram() -> None:
    registry = CollectorRegistry()
    vm_labels = {"provider": "aws", "kind": "instance"}
    with Ledger.open_default() as ledger:
        registry.register(metrics.LedgerCollector(ledger))
        job = ledger.create_job(name="j", provider="aws", script="t.py")
        vm = ledger.record_intent(provider="aws", kind="instance", job_id=job.id)
        time.sleep(0.2)
        ledger.mark_created(vm.id, cloud_id="i-1", state="pending", billable=False, rate_usd_per_hour=7.2)
        pending = parse(generate_latest(registry).decode())
        assert value(pending, "runctl_active_resources", **vm_labels, state="pending") == 1
        assert value(pending, "runctl_resource_allocation_seconds_count", **vm_labels) is None
        ledger.transition(vm.id, "running", billable=True)
        time.sleep(0.1)
        running = parse(generate_latest(registry).decode())
        assert value(running, "runctl_cost_rate_usd_per_hour", provider="aws") == pytest.approx(7.2)
        assert value(running, "runctl_resource_allocation_seconds_count", **vm_labels) == 1
        assert value(running, "runctl_resource_allocation_seconds_sum", **vm_labels) >= 0.2
        assert value(running, "runctl_resource_allocation_seconds_bucket", **vm_labels, le="0.1") == 0
        assert value(running, "runctl_resource_allocation_seconds_bucket", **vm_labels, le="5.0") == 1
        ledger.transition(vm.id, "terminated", billable=False)
        ended = parse(generate_latest(registry).decode())
    assert value(ended, "runctl_cost_rate_usd_per_hour", provider="aws") == 0
    assert value(ended, "runctl_active_resources", **vm_labels, state="terminated") is None
    cost = value(ended, "runctl_cost_accumulated_usd", provider="aws", job_id=job.id)
    assert cost == pytest.approx(value(ended, "runctl_cost_total_usd", provider="aws")) and cost > 0


def _api_calls(outcome: str) -> float:
    labels = {"service": "sts", "operation": "get_caller_identity", "outcome": outcome}
    return REGISTRY.get_sample_value("runctl_cloud_api_calls_count", labels) or 0.0


def test_cloud_api_calls_are_timed_per_attempt_and_outcome(fault_proxy: FaultProxy) -> None:
    from runctl.clients import aws as aws_clients
    from runctl.core.retry import RetryPolicy

    fault_proxy.fail_first(1, ec2_error("Throttling", 503), action="GetCallerIdentity")
    before_ok, before_throttled = _api_calls("ok"), _api_calls("ThrottledError")
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, deadline=10)
    sts = aws_clients.client("sts", "us-east-1")
    assert aws_clients.call(sts.get_caller_identity, operation="who am i", policy=policy)["Account"]
    assert _api_calls("ThrottledError") - before_throttled == 1
    assert _api_calls("ok") - before_ok == 1
