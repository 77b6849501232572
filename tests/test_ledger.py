"""The ledger: schema and migrations, refusal of newer/corrupt files, unwritable state dir,
final states, intent-first resources, usage intervals and cost, and 8 concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl.core.cost import interval_cost, job_cost
from runctl.core.errors import LedgerCorruptError, NotFoundError, StateDirError, StateError, ValidationError
from runctl.core.ledger import LEDGER_FILE, MIGRATIONS, Ledger, UsageInterval
from runctl.core.paths import ensure_state_dir
from tests.conftest import REPO, run_cli

SCRIPTS = REPO / "tests" / "scripts"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db") as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


# -- schema ------------------------------------------------------------------------------------


def test_fresh_ledger_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        assert ledger.integrity_check() == "ok"
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "resources", "usage", "events"} <= tables


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        job = ledger.create_job(name="keep", provider="local", script="t.py")
    with Ledger(path) as ledger:
        assert ledger.get_job(job.id).name == "keep"
        assert len(ledger.list_jobs()) == 1
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_an_empty_database_at_version_zero_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = raw(path)
    conn.execute("CREATE TABLE unrelated (x)")  # a valid SQLite file that predates any schema
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        ledger.create_job(name="a", provider="local", script="t.py")
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_newer_schema_is_refused_clearly(tmp_path: Path, isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    path = isolated_env / LEDGER_FILE
    Ledger(path).close()
    conn = raw(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StateError) as info:
        Ledger(path)
    assert "newer" in str(info.value) and str(path) in str(info.value)
    assert "upgrade runctl" in (info.value.hint or "")
    assert int(info.value.exit_code) == 74

    result = run_cli("jobs", "list")
    assert result.returncode == 74
    assert "newer" in result.stderr and "Traceback" not in result.stderr
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 5  # untouched


def test_corrupt_ledger_is_backed_up_and_never_recreated(tmp_path: Path, isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    path = isolated_env / LEDGER_FILE
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    marker = tmp_path / "ran"
    script = tmp_path / "touch.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")

    for args in (["jobs", "list"], ["local", str(script)]):
        result = run_cli(*args)
        assert result.returncode == 74, result.stderr
        assert "Traceback" not in result.stderr
        assert str(path) in result.stderr and "not a readable database" in result.stderr
        assert "hint:" in result.stderr and "will not overwrite" in result.stderr
    assert path.read_bytes() == garbage  # not recreated, not touched
    assert not marker.exists()  # nothing ran without a record
    backups = list(isolated_env.glob(f"{LEDGER_FILE}.corrupt-*"))
    assert backups
    assert all(b.read_bytes() == garbage for b in backups)
    assert any(str(b) in result.stderr for b in backups)  # the error says where the copy is


def test_an_empty_ledger_is_refused_kept_and_explained(tmp_path: Path, isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    path = isolated_env / LEDGER_FILE
    path.write_bytes(b"")  # truncated: by a full disk, a sync tool, a `> ledger.db`
    marker = tmp_path / "ran"
    script = tmp_path / "touch.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    for args in (["jobs", "list"], ["local", str(script)]):
        result = run_cli(*args)
        assert result.returncode == 74, result.stderr
        assert "Traceback" not in result.stderr
        assert str(path) in result.stderr and "empty (0 bytes)" in result.stderr
        assert f"rm {path}" in result.stderr  # how to start fresh, said, not done
    assert path.read_bytes() == b"" and not marker.exists()
    assert list(isolated_env.glob(f"{LEDGER_FILE}.corrupt-*"))


def test_a_new_ledger_is_never_seen_empty_and_is_private(tmp_path: Path) -> None:
    import os

    old = os.umask(0o002)
    try:
        with Ledger(tmp_path / "ledger.db") as ledger:
            ledger.create_job(name="j", provider="local", script="t.py")
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes["ledger.db"] == 0o600 and set(modes) <= {"ledger.db", "ledger.db-wal", "ledger.db-shm"}
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    assert (tmp_path / "ledger.db").stat().st_size > 0
    assert not list(tmp_path.glob(".ledger.db.*"))  # no temporary left behind


def test_damaged_pages_are_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        for i in range(200):
            ledger.create_job(name=f"job{i}", provider="local", script="x" * 200)
    conn = raw(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[page:-page] = b"\xde\xad\xbe\xef" * ((len(data) - 2 * page) // 4)  # keep the header page
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorruptError) as info, Ledger(path) as ledger:
        ledger.list_jobs()
    assert "backup" in str(info.value) or "copy was saved" in str(info.value)
    assert list(tmp_path.glob("ledger.db.corrupt-*"))


def test_ledger_path_that_cannot_be_opened_is_a_state_error(isolated_env: Path) -> None:
    (isolated_env / LEDGER_FILE).mkdir(parents=True)  # a directory where the file should be
    result = run_cli("jobs", "list")
    assert result.returncode == 74, result.stderr
    assert "cannot open the ledger" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert (isolated_env / LEDGER_FILE).is_dir()


def test_unwritable_state_dir_exits_73_naming_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # As root, chmod does not stop writes; a path under a regular file really cannot be created.
    result = run_cli("jobs", "list", env={"RUNCTL_STATE_DIR": str(blocker / "sub")})
    assert result.returncode == 73, result.stderr
    assert "Traceback" not in result.stderr
    assert str(blocker / "sub") in result.stderr
    assert "RUNCTL_STATE_DIR" in result.stderr

    result = run_cli("jobs", "list", env={"RUNCTL_STATE_DIR": str(blocker)})
    assert result.returncode == 73
    assert "is a file" in result.stderr and "RUNCTL_STATE_DIR" in result.stderr
    assert blocker.read_text() == "not a directory"


def test_state_dir_is_created_private(isolated_env: Path) -> None:
    assert not isolated_env.exists()
    assert ensure_state_dir() == isolated_env
    assert isolated_env.is_dir()
    assert isolated_env.stat().st_mode & 0o077 == 0


def test_ensure_state_dir_raises_state_dir_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("RUNCTL_STATE_DIR", str(tmp_path / "f" / "x"))
    with pytest.raises(StateDirError) as info:
        ensure_state_dir()
    assert int(info.value.exit_code) == 73


# -- jobs and final states ---------------------------------------------------------------------


def test_job_lifecycle_and_final_state_is_never_overwritten(ledger: Ledger) -> None:
    job = ledger.create_job(name="train", provider="local", script="t.py", args=["--lr", "0.1"])
    assert job.state == "pending" and job.args == ["--lr", "0.1"] and job.attempt == 1
    assert ledger.update_job(job.id, state="running", started_at=123.0)
    assert ledger.get_job(job.id).state == "running"

    assert ledger.finish_job(job.id, "interrupted", exit_code=143, detail="runctl received SIGTERM")
    assert not ledger.finish_job(job.id, "failed", exit_code=1, detail="late cleanup error")
    assert not ledger.update_job(job.id, detail="overwritten?", state="running")
    final = ledger.get_job(job.id)
    assert (final.state, final.exit_code, final.detail) == ("interrupted", 143, "runctl received SIGTERM")
    assert final.ended_at is not None and final.is_final
    kinds = [e.kind for e in ledger.events(job_id=job.id)]
    assert kinds == ["job.created", "job.finished", "job.late_outcome"]


def test_update_job_refuses_final_states_and_unknown_fields(ledger: Ledger) -> None:
    job = ledger.create_job(name="x", provider="local", script="t.py")
    with pytest.raises(ValueError):
        ledger.update_job(job.id, state="succeeded")
    with pytest.raises(ValueError):
        ledger.update_job(job.id, exit_code=3)
    with pytest.raises(ValueError):
        ledger.finish_job(job.id, "running")
    assert ledger.get_job(job.id).state == "pending"


def test_finish_keeps_last_checkpoint_unless_given(ledger: Ledger) -> None:
    job = ledger.create_job(name="x", provider="local", script="t.py")
    ledger.update_job(job.id, last_checkpoint="/c/ckpt-10.pkl")
    ledger.finish_job(job.id, "failed", exit_code=2)
    assert ledger.get_job(job.id).last_checkpoint == "/c/ckpt-10.pkl"


def test_get_job_by_prefix_and_errors(ledger: Ledger) -> None:
    a = ledger.create_job(name="a", provider="local", script="t.py", job_id="j-aaaa1111")
    ledger.create_job(name="b", provider="local", script="t.py", job_id="j-aaaa2222")
    assert ledger.get_job("j-aaaa1").id == a.id
    with pytest.raises(ValidationError):
        ledger.get_job("j-aaaa")
    with pytest.raises(NotFoundError):
        ledger.get_job("j-zzzz")
    with pytest.raises(NotFoundError):
        ledger.get_job("%")  # LIKE wildcards are taken literally


def test_list_jobs_filters_newest_first(ledger: Ledger) -> None:
    first = ledger.create_job(name="n", provider="local", script="t.py")
    other = ledger.create_job(name="m", provider="aws", script="t.py")
    second = ledger.create_job(name="n", provider="local", script="t.py")
    ledger.finish_job(first.id, "succeeded", exit_code=0)
    assert [j.id for j in ledger.list_jobs(name="n")] == [second.id, first.id]
    assert [j.id for j in ledger.list_jobs(states=["succeeded"])] == [first.id]
    assert [j.id for j in ledger.list_jobs(provider="aws")] == [other.id]
    assert [j.id for j in ledger.list_jobs(limit=1)] == [second.id]


def test_events_limit_returns_the_most_recent_oldest_first(ledger: Ledger) -> None:
    for i in range(10):
        ledger.add_event("test", f"e{i}", data={"i": i})
    events = ledger.events(limit=3)
    assert [e.message for e in events] == ["e7", "e8", "e9"]
    assert events[-1].data == {"i": 9}


# -- resources, usage and cost -----------------------------------------------------------------


def test_intent_is_written_before_the_resource_exists(ledger: Ledger) -> None:
    job = ledger.create_job(name="x", provider="aws", script="t.py")
    intent = ledger.record_intent(provider="aws", kind="instance", job_id=job.id, spec={"type": "g5"})
    assert intent.state == "intent" and intent.cloud_id is None
    assert intent.client_token.startswith(f"runctl-{intent.id}-")
    other = ledger.record_intent(provider="aws", kind="instance", job_id=job.id)
    assert other.client_token != intent.client_token
    assert ledger.usage(resource_id=intent.id) == []  # nothing billed for an intent
    assert [e.kind for e in ledger.events(job_id=job.id)][-2:] == ["resource.intent", "resource.intent"]

    created = ledger.mark_created(
        intent.id, cloud_id="i-123", state="pending", billable=False, rate_usd_per_hour=2.0, zone="us-east-1a"
    )
    assert (created.cloud_id, created.state, created.zone) == ("i-123", "pending", "us-east-1a")
    assert created.rate_usd_per_hour == 2.0 and created.spec == {"type": "g5"}
    assert ledger.find_resource("aws", "i-123").id == intent.id
    assert ledger.find_resource("aws", "i-nope") is None
    assert ledger.usage(resource_id=intent.id) == []


def test_usage_intervals_follow_billable_states_and_cost_sums_them(ledger: Ledger) -> None:
    job = ledger.create_job(name="x", provider="aws", script="t.py")
    res = ledger.record_intent(provider="aws", kind="instance", job_id=job.id)
    ledger.mark_created(res.id, cloud_id="i-1", state="running", billable=True, rate_usd_per_hour=3.6)
    ledger.transition(res.id, "running", billable=True)  # staying billable opens nothing new
    assert len(ledger.usage(resource_id=res.id)) == 1
    ledger.transition(res.id, "stopped", billable=False)
    ledger.transition(res.id, "stopped", billable=False)
    ledger.transition(res.id, "running", billable=True)
    ledger.set_rate(res.id, 7.2)  # splits the open interval at the new rate
    ledger.transition(res.id, "terminated", billable=False)
    intervals = ledger.usage(job_id=job.id)
    assert [i.rate_usd_per_hour for i in intervals] == [3.6, 3.6, 7.2]
    assert all(i.ended_at is not None and i.ended_at >= i.started_at for i in intervals)
    assert intervals[1].ended_at == intervals[2].started_at

    # pin the intervals to known times: 1 h at 3.6, 30 min at 3.6, 10 min at 7.2
    conn = raw(ledger.path)
    rows = [r[0] for r in conn.execute("SELECT id FROM usage ORDER BY id")]
    for row_id, (start, end) in zip(rows, [(0, 3600), (7200, 9000), (9000, 9600)], strict=True):
        conn.execute("UPDATE usage SET started_at = ?, ended_at = ? WHERE id = ?", (start, end, row_id))
    conn.commit()
    conn.close()
    assert job_cost(ledger, job.id) == pytest.approx(3.6 + 1.8 + 1.2)
    states = [e.message for e in ledger.events(job_id=job.id) if e.kind == "resource.state"]
    assert states[0].startswith("intent -> running") and states[-1].startswith("running -> terminated")


def test_open_interval_is_costed_up_to_now() -> None:
    open_interval = UsageInterval("r-1", "j-1", started_at=1000.0, ended_at=None, rate_usd_per_hour=36.0)
    closed = UsageInterval("r-1", "j-1", started_at=0.0, ended_at=100.0, rate_usd_per_hour=36.0)
    assert interval_cost(open_interval, now=1100.0) == pytest.approx(1.0)
    assert interval_cost(closed, now=5000.0) == pytest.approx(1.0)


def test_transition_of_unknown_resource_is_not_found_and_rolls_back(ledger: Ledger) -> None:
    before = len(ledger.events(limit=1000))
    with pytest.raises(NotFoundError):
        ledger.transition("r-missing", "running", billable=True)
    assert len(ledger.events(limit=1000)) == before
    assert ledger.usage() == []


def test_resource_listing_hides_gone_ones_on_request(ledger: Ledger) -> None:
    a = ledger.record_intent(provider="local", kind="process")
    b = ledger.record_intent(provider="local", kind="process", persistent=True)
    ledger.transition(a.id, "terminated", billable=False)
    assert {r.id for r in ledger.list_resources()} == {a.id, b.id}
    assert [r.id for r in ledger.list_resources(include_gone=False)] == [b.id]
    assert ledger.get_resource(b.id).persistent
    assert ledger.get_resource(a.id).is_gone


# -- concurrency -------------------------------------------------------------------------------


def test_eight_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # not created yet: the writers race to migrate it too
    workers, per_worker = 8, 40
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPTS / "ledger_writer.py"), str(path), str(w), str(per_worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    total = workers * per_worker
    with Ledger(path) as ledger:
        assert ledger.integrity_check() == "ok"
        jobs = ledger.list_jobs()
        assert len(jobs) == total
        assert len({j.id for j in jobs}) == total
        assert all(j.state == "succeeded" for j in jobs)
        for w in range(workers):
            args = sorted(int(j.args[0]) for j in ledger.list_jobs(name=f"w{w}"))
            assert args == list(range(per_worker))
        resources = ledger.list_resources()
        assert len(resources) == total and all(r.state == "terminated" for r in resources)
        usage = ledger.usage()
        assert len(usage) == total and all(u.ended_at is not None for u in usage)
    conn = raw(path)
    # per item: job.created, test.write, resource.intent, 2 x resource.state, job.finished
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == total * 6
    assert conn.execute("SELECT count(*) FROM events WHERE kind = 'test.write'").fetchone()[0] == total
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
