"""`runctl dashboard` through Starlette's test client on a known ledger: the figures equal
`cost report`'s, hostile strings are escaped, the token and the CSRF token are enforced, and the
two actions go through the same workflows as the CLI."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from runctl.core.config import Config, CostConfig
from runctl.core.cost import report
from runctl.core.ledger import Job, Ledger
from runctl.providers.local import process_cloud_id
from runctl.web.app import TOKEN_COOKIE, create_app
from runctl.workflows.dashboard import HEARTBEAT_EVENT
from tests.conftest import run_cli
from tests.support.dashboard_ledger import HOSTILE, known_ledger, machine


def _client(ledger: Ledger, **kwargs: object) -> TestClient:
    return TestClient(create_app(ledger, Config(cost=CostConfig(budget_usd=100.0)), **kwargs))  # type: ignore[arg-type]


def test_money_figures_equal_cost_report(tmp_path: Path) -> None:
    with Ledger.open_default() as ledger:
        ids = known_ledger(ledger)
        money = _client(ledger).get("/api/money").json()
        since = money["since"]
        per_day = {
            day: sum(series[i] for series in money["per_day"]["provider"].values())
            for i, day in enumerate(money["days"])
        }
        by_day = report(ledger, by="day", since=since)
        expected = {r.key: r.cost_usd for r in by_day.rows}
        assert {d: v for d, v in per_day.items() if v} == pytest.approx(expected)
        assert len(expected) == 3  # the spot run crossed midnight
        by_provider = report(ledger, by="provider", since=since)
        assert {p: sum(v) for p, v in money["per_day"]["provider"].items()} == pytest.approx(
            {r.key: r.cost_usd for r in by_provider.rows}
        )
        for grouping in ("owner", "project"):
            assert sum(sum(v) for v in money["per_day"][grouping].values()) == pytest.approx(by_day.total_usd)
        assert set(money["per_day"]["owner"]) == {"alice-laptop", socket.gethostname()}
        assert set(money["per_day"]["project"]) == {"vision", "nlp", "(none)"}
        by_job = report(ledger, by="job", since=since)
        assert [(j["id"], j["cost_usd"]) for j in money["top_jobs"]] == [
            (r.key, pytest.approx(r.cost_usd)) for r in by_job.rows
        ]
        tiny = next(j for j in money["top_jobs"] if j["id"] == ids["vision.tiny"])
        assert tiny["cost_usd"] == pytest.approx(60 * 2.0 / 3600)  # billed its minimum
        assert money["total_usd"] == pytest.approx(by_day.total_usd)
        month = next(b for b in money["budgets"] if b["period"] == "month")
        assert month["budget_usd"] == 100.0
        # the preempted spot attempt redid its whole run (no checkpoint time known): 5 h × $3
        [loss] = money["preemption_losses"]
        assert loss["job_id"] == ids["vision.resnet"] and loss["upper_bound"] is True
        assert loss["lost_usd"] == pytest.approx(5 * 3.0, rel=0.01)


def test_money_page_draws_one_series_per_provider_with_a_table_under_it() -> None:
    with Ledger.open_default() as ledger:
        known_ledger(ledger)
        client = _client(ledger)
        html = client.get("/money").text
        assert len(re.findall(r'<g class="series"', html)) == 3
        assert re.findall(r'data-series="([^"]+)"', html) == ["aws", "local", "runpod"]
        assert "/api/money?by=provider" in html and "<table" in html
        by_owner = client.get("/money?by=owner").text
        assert len(re.findall(r'<g class="series"', by_owner)) == 2
        assert client.get("/money?by=nonsense").status_code == 400


def test_reliability_counts_preemptions_per_machine_hour_and_outcomes_per_week() -> None:
    with Ledger.open_default() as ledger:
        known_ledger(ledger)
        data = _client(ledger).get("/api/reliability").json()
        spot = next(m for m in data["markets"] if m["market"] == "spot")
        assert (spot["type"], spot["zone"], spot["preemptions"]) == ("g5.xlarge", "us-east-1a", 1)
        assert spot["machine_hours"] == pytest.approx(5.0)
        assert spot["per_machine_hour"] == pytest.approx(1 / 5.0)
        on_demand = next(m for m in data["markets"] if (m["market"], m["type"]) == ("on-demand", "g5.xlarge"))
        assert on_demand["preemptions"] == 0
        assert sum(sum(v) for v in data["outcomes"].values()) == 4
        assert sum(data["outcomes"]["succeeded"]) == 3 and sum(data["outcomes"]["preempted"]) == 1
        html = _client(ledger).get("/reliability").text
        assert html.count('<g class="series"') == 1 + 2  # the rate; succeeded and preempted


def test_now_lists_running_jobs_and_flags_what_is_unaccounted_for(tmp_path: Path) -> None:
    with Ledger.open_default() as ledger:
        log = tmp_path / "run.log"
        log.write_text("step=1\n")
        running = ledger.create_job(name="vision.big", provider="local", script="t.py", log_path=str(log))
        ledger.update_job(running.id, state="running", started_at=time.time() - 60)
        machine(ledger, running, "local", "process", 3.6, None)
        ended = ledger.create_job(name="old", provider="aws", script="t.py")
        ledger.finish_job(ended.id, "failed")
        leaked = machine(ledger, ended, "aws", "instance", 1.0, None, instance_type="t3.micro")
        intent = ledger.record_intent(provider="aws", kind="instance", job_id=ended.id)
        now = _client(ledger).get("/api/now").json()
    [job] = now["jobs"]
    assert (job["id"], job["owner"], job["project"], job["provider"]) == (
        running.id, socket.gethostname(), "vision", "local",
    )  # fmt: skip
    assert job["rate_usd_per_hour"] == pytest.approx(3.6) and job["cost_usd"] >= 0
    assert job["heartbeat_age_s"] is not None  # a local job: its log's last write
    assert set(now["unaccounted"]) == {leaked, intent.id}
    flagged = {r["id"]: r for r in now["resources"]}
    assert flagged[leaked]["releasable"] and "ended failed" in flagged[leaked]["problem"]
    assert not flagged[intent.id]["releasable"] and "reconcile" in flagged[intent.id]["problem"]


def test_job_page_shows_attempts_heartbeat_and_an_escaped_log_and_name(tmp_path: Path) -> None:
    with Ledger.open_default() as ledger:
        log = tmp_path / "run.log"
        log.write_text(f"step=1\n{HOSTILE}\n")
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir()
        (ckpt / "ckpt-00000040.pkl").write_bytes(b"x")
        job = ledger.create_job(name=HOSTILE, provider="local", script="t.py", log_path=str(log),
                                checkpoint_dir=str(ckpt))  # fmt: skip
        ledger.update_job(job.id, state="running", started_at=time.time())
        machine(ledger, job, "local", "process", 1.0, None)
        ledger.add_event(HEARTBEAT_EVENT, HOSTILE, job_id=job.id, data={"gpu_percent": 50})
        ledger.add_event("job.note", HOSTILE, job_id=job.id)
        client = _client(ledger)
        pages = [client.get("/now").text, client.get(f"/jobs/{job.id}").text]
        data = client.get(f"/api/jobs/{job.id}").json()
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert data["job"]["name"] == HOSTILE  # JSON carries the value itself (served as application/json)
    assert [a["number"] for a in data["attempts"]] == [1]
    assert [c["step"] for c in data["checkpoints"]] == [40]
    assert HOSTILE in data["log_tail"]


def test_unknown_job_ids_are_404_with_the_id_escaped() -> None:
    with Ledger.open_default() as ledger:
        live = ledger.create_job(name="live", provider="local", script="t.py")  # puts a form on Now
        ledger.update_job(live.id, state="running")
        client = _client(ledger)
        page = client.get("/jobs/%3Cscript%3Ex")
        api = client.get("/api/jobs/nope")
        cancel = client.post("/jobs/nope/cancel", data={"csrf": _csrf(client)})
    assert page.status_code == 404 and "<script>x" not in page.text and "&lt;script&gt;x" in page.text
    assert api.status_code == 404 and "no job 'nope'" in api.json()["error"]
    assert cancel.status_code == 404


def _csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/now").text)
    if match:
        return match.group(1)
    raise AssertionError("no CSRF token on the Now page (is there an action on it?)")


def test_without_the_token_every_request_is_refused() -> None:
    token = "t" * 32
    with Ledger.open_default() as ledger:
        client = _client(ledger, token=token)
        for path in ("/", "/now", "/api/now", "/api/money", "/static/dashboard.js", "/live/now", "/jobs/x"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert "token" in refused.text
        assert client.get("/now?token=wrong").status_code == 401
        assert client.get("/now", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post("/jobs/x/cancel").status_code == 401
        opened = client.get(f"/now?token={token}")
        assert opened.status_code == 200 and TOKEN_COOKIE in opened.headers["set-cookie"]
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.get("/api/now").status_code == 200  # the cookie carries it from now on
        bearer = _client(ledger, token=token)
        assert bearer.get("/api/now", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert token not in opened.text  # never written into a page


def test_pages_forbid_inline_script_and_foreign_origins() -> None:
    with Ledger.open_default() as ledger:
        response = _client(ledger).get("/now")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "same-origin"
    assert re.search(r"<script>", response.text) is None
    assert re.findall(r'(?:src|href)="(https?:)?//', response.text) == []


def _leaked_local(ledger: Ledger) -> tuple[Job, str]:
    ended = ledger.create_job(name="gone", provider="local", script="t.py")
    ledger.finish_job(ended.id, "failed")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    resource = ledger.record_intent(provider="local", kind="process", job_id=ended.id)
    ledger.mark_created(resource.id, cloud_id=process_cloud_id(dead.pid), state="running", billable=True,
                        rate_usd_per_hour=1.0)  # fmt: skip
    return ended, resource.id


def test_actions_need_the_csrf_token_and_a_same_origin_post() -> None:
    with Ledger.open_default() as ledger:
        running = ledger.create_job(name="live", provider="local", script="t.py")
        ledger.update_job(running.id, state="running")
        _, leaked = _leaked_local(ledger)
        client = _client(ledger)
        csrf = _csrf(client)
        assert client.post(f"/jobs/{running.id}/cancel").status_code == 403
        assert client.post(f"/jobs/{running.id}/cancel", data={"csrf": "0" * 64}).status_code == 403
        foreign = client.post(f"/jobs/{running.id}/cancel", data={"csrf": csrf},
                              headers={"Origin": "https://evil.example"})  # fmt: skip
        assert foreign.status_code == 403
        assert client.post(f"/resources/{leaked}/release", data={}).status_code == 403
        assert not ledger.get_job(running.id).cancel_requested
        assert ledger.get_resource(leaked).state == "running"


def test_release_a_leaked_resource_through_the_lifecycle() -> None:
    with Ledger.open_default() as ledger:
        _, leaked = _leaked_local(ledger)
        running = ledger.create_job(name="live", provider="local", script="t.py")
        ledger.update_job(running.id, state="running")
        busy = machine(ledger, running, "local", "process", 1.0, None)
        client = _client(ledger)
        csrf = _csrf(client)
        refused = client.post(f"/resources/{busy}/release", data={"csrf": csrf})
        assert refused.status_code == 409 and ledger.get_resource(busy).state == "running"
        done = client.post(f"/resources/{leaked}/release", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/now"
        assert ledger.get_resource(leaked).state == "terminated"
        assert leaked not in client.get("/api/now").json()["unaccounted"]


def test_cancel_from_the_dashboard_finishes_a_job_whose_runner_is_gone() -> None:
    with Ledger.open_default() as ledger:
        job = ledger.create_job(name="orphan", provider="local", script="t.py", runner_pid=None)
        ledger.update_job(job.id, state="running")
        client = _client(ledger)
        csrf = _csrf(client)
        done = client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job.id}"
        assert ledger.get_job(job.id).state == "cancelled"
        assert "cancelled" in client.get(f"/jobs/{job.id}").text
        again = client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf})
        assert again.status_code == 409 and "already ended" in again.text


def test_dashboard_refuses_a_short_token_and_help_lists_it() -> None:
    short = run_cli("dashboard", "--token", "abc")
    assert short.returncode == 64 and "--token" in short.stderr
    helped = run_cli("dashboard", "--help")
    assert helped.returncode == 0 and "--host" in helped.stdout and "--token" in helped.stdout


def test_money_follows_a_change_another_process_made_at_once() -> None:
    with Ledger.open_default() as ledger:
        known_ledger(ledger)
        client = _client(ledger)
        before = client.get("/api/money").json()["total_usd"]
        assert client.get("/api/money").json()["total_usd"] == before  # served again (cached)
        with Ledger.open_default() as other:  # another process's connection
            day = time.time() // 86400 * 86400 - 86400
            job = other.create_job(name="late", provider="aws", script="t.py")
            machine(other, job, "aws", "instance", 7.2, (day + 3600, day + 5400))
        assert client.get("/api/money").json()["total_usd"] == pytest.approx(before + 3.6)


def test_a_providers_raw_error_and_secrets_never_reach_the_job_page() -> None:
    raw = "An error occurred (UnauthorizedOperation): Encoded authorization failure message: ZZSECRETZZ"
    with Ledger.open_default() as ledger:
        job = ledger.create_job(name="leaky", provider="aws", script="t.py")
        ledger.add_event("resource.create_error", f"create instance failed: {raw}", job_id=job.id)
        ledger.add_event("resource.release_failed", raw, job_id=job.id)
        ledger.finish_job(job.id, "failed_setup", detail="aws_secret_access_key=wJalrXUtnFEMIbPxRfiCY")
        client = _client(ledger)
        html, data = client.get(f"/jobs/{job.id}").text, client.get(f"/api/jobs/{job.id}").text
    for shown in (html, data):
        assert "ZZSECRETZZ" not in shown and "UnauthorizedOperation" not in shown
        assert "wJalrXUtnFEMIbPxRfiCY" not in shown and "aws_secret_access_key=***" in shown
        assert f"runctl events --job {job.id}" in shown


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("build-box", False)],
)  # fmt: skip
def test_only_loopback_addresses_go_without_a_token(host: str, loopback: bool) -> None:
    from runctl.cli.dashboard_cmd import is_loopback

    assert is_loopback(host) is loopback
