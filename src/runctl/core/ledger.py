"""The ledger: one SQLite database that is runctl's memory of jobs, resources, usage and events.

Rules (see DESIGN.md):

* **Persist everything, hold nothing in memory** another process needs. Every write is one
  short ``BEGIN IMMEDIATE`` transaction; WAL mode and a busy timeout let several runctl
  processes (a ``local`` run, a ``jobs list``, a ``top``) share the file safely.
* **Intent before action.** :meth:`Ledger.record_intent` writes a resource row in state
  ``intent`` with a fresh client token *before* the cloud call that creates it; the call carries
  the token and the row id as tags; :meth:`Ledger.mark_created` fills in the cloud id after.
* **Final states are final.** A job that reached a final state keeps it: a later cleanup
  error can add an event but never overwrite the outcome.
* **Cost from intervals.** Entering a billable state opens a usage interval at the resource's
  current rate; leaving it closes the interval. Cost is the sum over intervals.
* **No secret stored.** Every job detail and event (message and data) is redacted
  (:func:`runctl.core.secrets.redact`) on its way in, whoever wrote it: a provider's error
  that echoes a credential is stored masked.
* **Write failures are named.** A full disk, a read-only ledger and an I/O error are each a
  :class:`StateError` (exit code 74) that names the ledger's path and what to do.
* **Never silently recreated.** A file that is not a database is copied to a
  ``.corrupt-<time>`` backup and reported (exit code 74); runctl refuses to start a fresh one in
  its place, so no record of a running machine is thrown away by accident. An empty (0-byte)
  file counts as corrupt too: SQLite would take it for a new database, but runctl never leaves
  one behind (a new ledger is built under a temporary name and linked into place once it has
  its header, so no other process, and no crash, can see it empty), so an empty ledger is one
  that something else truncated.
* **Private.** The ledger is created 0600 whatever the umask; SQLite gives its ``-wal`` and
  ``-shm`` files the database's mode.

The schema version is ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades forward only.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.core.errors import (
    LedgerCorruptError,
    NotFoundError,
    StateDirError,
    StateError,
    ValidationError,
)
from runctl.core.paths import ensure_state_dir
from runctl.core.secrets import redact

LEDGER_FILE = "ledger.db"
BUSY_TIMEOUT_S = 30.0

#: Job states after which nothing more happens to the job.
FINAL_JOB_STATES = frozenset(
    {
        "succeeded",
        "failed",
        "interrupted",
        "cancelled",
        "timed_out",
        "lost",
        "preempted",
        "no_capacity",
        "failed_setup",
        "hung",
        "time_limit",
        "failed_precheck",
    }
)
#: Final states whose last checkpoint a new run of the same job should continue from.
RESUMABLE_JOB_STATES = frozenset(
    {"failed", "interrupted", "timed_out", "lost", "preempted", "hung", "time_limit"}
)
#: Resource states in which the resource no longer exists and costs nothing.
GONE_RESOURCE_STATES = frozenset({"terminated", "deleted", "released", "create_failed"})

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        script TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '[]',
        workdir TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        attempt INTEGER NOT NULL DEFAULT 1,
        checkpoint_dir TEXT,
        log_path TEXT,
        resume_from TEXT,
        last_checkpoint TEXT,
        detail TEXT,
        runner_pid INTEGER,
        host TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_name ON jobs(name, created_at);
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        job_id TEXT REFERENCES jobs(id),
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        cloud_id TEXT,
        client_token TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        rate_usd_per_hour REAL,
        region TEXT,
        zone TEXT,
        spec TEXT NOT NULL DEFAULT '{}',
        persistent INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX resources_job ON resources(job_id);
    CREATE INDEX resources_cloud ON resources(provider, cloud_id);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        resource_id TEXT NOT NULL REFERENCES resources(id),
        job_id TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        rate_usd_per_hour REAL NOT NULL
    );
    CREATE INDEX usage_resource ON usage(resource_id);
    CREATE INDEX usage_job ON usage(job_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        job_id TEXT,
        resource_id TEXT,
        data TEXT
    );
    CREATE INDEX events_job ON events(job_id, id);
    """,
    # 2: remote jobs keep their checkpoints, logs and status in storage, not on this machine
    """
    ALTER TABLE jobs ADD COLUMN storage_url TEXT;
    """,
    # 3: a remote job keeps its whole request (machine spec, limits, options) so that `jobs wait`
    # and `jobs resume` relaunch it as it was asked; a resource records its billing minimum
    # (rows written before this: instances and volumes, the kinds that had one)
    """
    ALTER TABLE jobs ADD COLUMN request TEXT;
    UPDATE resources SET spec = json_set(spec, '$.billing_minimum_s', 60.0)
        WHERE kind IN ('instance', 'volume') AND json_extract(spec, '$.billing_minimum_s') IS NULL;
    """,
)


class ResumeTakenError(ValidationError):
    """Another run already continues the job this one was about to resume."""

    def __init__(self, resumed: Job, by: str, state: str, attempt: int) -> None:
        running = state not in FINAL_JOB_STATES
        super().__init__(
            f"job {resumed.name!r} is already being resumed from job {resumed.id} by job {by} "
            f"(attempt {attempt}, {state})"
            if running
            else f"job {resumed.id} was already resumed by job {by} (attempt {attempt}, {state})",
            hint=f"wait for job {by} to end ('runctl jobs show {by}') or cancel it "
            f"('runctl jobs cancel {by}'); or start a separate run with --no-resume or another --name"
            if running
            else f"run again to continue from job {by}, or start afresh with --no-resume",
        )


def new_id(prefix: str) -> str:
    """A short random id such as ``j-3f9a2c1b``."""
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Job:
    """One training job: a script run, possibly over several attempts."""

    id: str
    name: str
    provider: str
    state: str
    script: str
    args: list[str]
    workdir: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    attempt: int
    checkpoint_dir: str | None
    log_path: str | None
    resume_from: str | None
    last_checkpoint: str | None
    detail: str | None
    runner_pid: int | None
    host: str | None
    cancel_requested: bool
    storage_url: str | None = None
    request: dict[str, Any] | None = None  # a remote job's request (workflows.remote.RemoteTrain)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_JOB_STATES

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Resource:
    """A machine, volume or pod that runctl created (or meant to create)."""

    id: str
    job_id: str | None
    provider: str
    kind: str
    cloud_id: str | None
    client_token: str
    state: str
    rate_usd_per_hour: float | None
    region: str | None
    zone: str | None
    spec: dict[str, Any]
    persistent: bool
    created_at: float
    updated_at: float

    @property
    def is_gone(self) -> bool:
        return self.state in GONE_RESOURCE_STATES

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Event:
    """One line of the append-only event log."""

    id: int
    ts: float
    kind: str
    message: str
    job_id: str | None
    resource_id: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class UsageInterval:
    """A stretch of time a resource was billable, at one rate. ``ended_at`` None = still open."""

    resource_id: str
    job_id: str | None
    started_at: float
    ended_at: float | None
    rate_usd_per_hour: float


class Ledger:
    """Access to the ledger database. Cheap to open; safe to use from several processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            if not path.exists():
                _create(path)
            elif path.is_file() and path.stat().st_size == 0:
                self._refuse_empty()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StateDirError(
                f"cannot create the ledger {path}: {getattr(exc, 'strerror', None) or exc}",
                hint=f"{path.parent} must be a writable directory, or set RUNCTL_STATE_DIR to another one",
            ) from exc
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._raise_corrupt(exc)

    @classmethod
    def open_default(cls) -> Ledger:
        """The ledger in the state directory (created on first use)."""
        return cls(ensure_state_dir() / LEDGER_FILE)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _backup(self) -> str:
        backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            shutil.copy2(self.path, backup)
            return f"a copy was saved as {backup}"
        except OSError:
            return "no backup could be written"

    def _refuse_empty(self) -> None:
        saved = self._backup()
        raise LedgerCorruptError(
            f"the ledger {self.path} is empty (0 bytes): its records are gone (truncated by a full "
            f"disk, a sync tool or a command); {saved}",
            hint=f"restore {self.path} from a backup if you have one; to start a new, empty ledger, "
            f"delete it (rm {self.path}) and run runctl again. Then 'runctl resources reconcile' finds "
            "cloud resources runctl tagged",
        )

    def _raise_corrupt(self, exc: sqlite3.DatabaseError) -> None:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StateError(
                f"the ledger {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f}s",
                hint="another runctl process holds it; retry, or look for a stuck process",
                retryable=True,
            ) from exc
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            raise StateError(
                f"cannot open the ledger {self.path}: {exc}",
                hint=f"{self.path} must be a readable, writable file (is it a directory?), or set "
                "RUNCTL_STATE_DIR to another directory",
            ) from exc
        if (cannot_write := self._write_failure(exc)) is not None:
            raise cannot_write from exc
        if not any(sign in str(exc) for sign in ("not a database", "malformed", "corrupt")):
            raise exc
        saved = self._backup()
        raise LedgerCorruptError(
            f"the ledger {self.path} is not a readable database ({exc}); {saved}",
            hint=f"move {self.path} aside to start a new ledger, or restore it from a backup; "
            "runctl will not overwrite it",
        ) from exc

    def _write_failure(self, exc: sqlite3.DatabaseError) -> StateError | None:
        """A full disk, a read-only file or an I/O error, as a clear error naming the path."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
        where = self.path.parent
        move = "or set RUNCTL_STATE_DIR to another directory"
        if code == sqlite3.SQLITE_FULL:
            return StateError(
                f"cannot write the ledger {self.path}: the disk is full",
                hint=f"free space on the filesystem of {where} (df -h {where}), {move}",
            )
        if code == sqlite3.SQLITE_READONLY:
            return StateError(
                f"cannot write the ledger {self.path}: it is read-only",
                hint=f"make {self.path}, its -wal and -shm files and {where} writable, {move}",
            )
        if code == sqlite3.SQLITE_IOERR:
            return StateError(
                f"cannot read or write the ledger {self.path}: disk I/O error",
                hint=f"check the disk holding {where} (free space, dmesg), {move}",
            )
        return None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._raise_corrupt(exc)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                self._raise_corrupt(exc)
                raise  # pragma: no cover

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(
                f"the ledger {self.path} has schema version {version}, newer than this runctl "
                f"understands ({len(MIGRATIONS)})",
                hint="upgrade runctl (pip install -U runctl), or point RUNCTL_STATE_DIR elsewhere",
            )
        for target in range(version, len(MIGRATIONS)):
            with self._tx() as conn:
                # user_version is re-read inside the lock: another process may have migrated.
                if conn.execute("PRAGMA user_version").fetchone()[0] != target:
                    continue
                for statement in filter(str.strip, MIGRATIONS[target].split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target + 1}")

    def check_writable(self) -> None:
        """Raise :class:`StateError` (naming the file or directory and the fix) unless runctl can
        write here: a write transaction is begun, tried and rolled back, so nothing changes."""
        import os

        def fix(target: Path) -> str:
            return (
                f"make it writable (chmod u+w {target}; chattr -i {target} if it is immutable; "
                "remount a read-only file system read-write), or set RUNCTL_STATE_DIR to a "
                "writable directory"
            )

        for target, what in ((self.path, "file"), (self.path.parent, "directory")):
            if not os.access(target, os.W_OK):
                raise StateError(f"the ledger {what} {target} is not writable", hint=fix(target))
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute("CREATE TABLE main.runctl_write_probe (x)")
                finally:
                    self._conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                message = f"the ledger {self.path} cannot be written: {exc}"
                raise StateError(message, hint=fix(self.path)) from None

    def change_mark(self) -> tuple[int, int]:
        """Equal marks, read from this object at two moments: nothing was committed in between,
        by any process (SQLite's ``data_version`` counts others' commits; ``total_changes`` this
        connection's own). Lets a reader reuse what it computed from the ledger."""
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), self._conn.total_changes

    def integrity_check(self) -> str:
        """SQLite's own integrity check: ``"ok"`` when the file is sound."""
        return str(self._query("PRAGMA integrity_check")[0][0])

    # -- events --------------------------------------------------------------------------------

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        job_id: str | None = None,
        resource_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._tx() as conn:
            self._insert_event(conn, kind, message, job_id, resource_id, data)

    @staticmethod
    def _insert_event(
        conn: sqlite3.Connection,
        kind: str,
        message: str,
        job_id: str | None,
        resource_id: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        stored = json.dumps(_redacted(data)) if data else None
        conn.execute(
            "INSERT INTO events (ts, kind, message, job_id, resource_id, data) VALUES (?,?,?,?,?,?)",
            (time.time(), kind, redact(message), job_id, resource_id, stored),
        )

    def events(self, *, job_id: str | None = None, kind: str | None = None, limit: int = 100) -> list[Event]:
        """The most recent events (oldest first), optionally for one job, of one kind."""
        where, params = _filters(job_id=job_id, kind=kind)
        rows = self._query(
            f"SELECT * FROM (SELECT * FROM events {where} ORDER BY id DESC LIMIT ?) ORDER BY id",
            [*params, limit],
        )
        return [
            Event(
                id=r["id"],
                ts=r["ts"],
                kind=r["kind"],
                message=r["message"],
                job_id=r["job_id"],
                resource_id=r["resource_id"],
                data=json.loads(r["data"]) if r["data"] else {},
            )
            for r in rows
        ]

    # -- jobs ----------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        name: str,
        provider: str,
        script: str,
        args: Sequence[str] = (),
        workdir: str | None = None,
        checkpoint_dir: str | None = None,
        log_path: str | None = None,
        resume_from: str | None = None,
        attempt: int = 1,
        job_id: str | None = None,
        runner_pid: int | None = None,
        resumes: Job | None = None,
    ) -> Job:
        """Record a new job in state ``pending``.

        ``resumes``: the job this one continues. Claiming it is part of the same transaction: if
        a newer job of the name already continues it (two runs resuming the same checkpoint at
        once), nothing is written and :class:`ResumeTakenError` names that job.
        """
        job_id = job_id or new_id("j")
        with self._tx() as conn:
            if resumes is not None:
                taken = conn.execute(
                    "SELECT id, state, attempt FROM jobs WHERE name = ? AND id != ? AND attempt > ?"
                    " AND created_at >= ? ORDER BY created_at LIMIT 1",
                    (resumes.name, resumes.id, resumes.attempt, resumes.created_at),
                ).fetchone()
                if taken is not None:
                    raise ResumeTakenError(resumes, taken["id"], taken["state"], taken["attempt"])
            conn.execute(
                "INSERT INTO jobs (id, name, provider, state, script, args, workdir, created_at,"
                " attempt, checkpoint_dir, log_path, resume_from, host, runner_pid)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    name,
                    provider,
                    "pending",
                    script,
                    json.dumps(list(args)),
                    workdir,
                    time.time(),
                    attempt,
                    checkpoint_dir,
                    log_path,
                    resume_from,
                    socket.gethostname(),
                    runner_pid,
                ),
            )
            self._insert_event(conn, "job.created", f"job {name} created", job_id, None, None)
        return self.get_job(job_id)

    _JOB_UPDATABLE = frozenset(
        {
            "state",
            "started_at",
            "runner_pid",
            "last_checkpoint",
            "detail",
            "log_path",
            "checkpoint_dir",
            "attempt",
            "storage_url",
            "cancel_requested",
            "request",
        }
    )

    def update_job(self, job_id: str, **fields: Any) -> bool:
        """Change a job that is not final yet. Returns False (and changes nothing) if it is."""
        unknown = set(fields) - self._JOB_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        if fields.get("state") in FINAL_JOB_STATES:
            raise ValueError("use finish_job() to enter a final state")
        if fields.get("request") is not None:
            fields["request"] = json.dumps(fields["request"])
        if isinstance(fields.get("detail"), str):
            fields["detail"] = redact(fields["detail"])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND state NOT IN "
                f"({','.join('?' * len(FINAL_JOB_STATES))})",
                [*fields.values(), job_id, *FINAL_JOB_STATES],
            )
            return cur.rowcount == 1

    def finish_job(
        self,
        job_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        detail: str | None = None,
        last_checkpoint: str | None = None,
    ) -> bool:
        """Enter a final state once. Returns False if the job was already final (kept as is)."""
        if state not in FINAL_JOB_STATES:
            raise ValueError(f"{state!r} is not a final job state")
        detail = redact(detail) if detail else detail
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, detail = ?, ended_at = ?,"
                " last_checkpoint = COALESCE(?, last_checkpoint)"
                f" WHERE id = ? AND state NOT IN ({','.join('?' * len(FINAL_JOB_STATES))})",
                [state, exit_code, detail, time.time(), last_checkpoint, job_id, *FINAL_JOB_STATES],
            )
            finished = cur.rowcount == 1
            message = f"job {state}" + (f": {detail}" if detail else "")
            if not finished:
                message = f"ignored late outcome {state!r} for a job already final"
            self._insert_event(
                conn,
                "job.finished" if finished else "job.late_outcome",
                message,
                job_id,
                None,
                {"exit_code": exit_code},
            )
        return finished

    def get_job(self, job_id: str) -> Job:
        """A job by id or unique id prefix."""
        rows = self._query("SELECT * FROM jobs WHERE id = ?", [job_id])
        if not rows:
            rows = self._query(
                "SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                [job_id.replace("%", "\\%").replace("_", "\\_") + "%"],
            )
        if len(rows) > 1:
            raise ValidationError(
                f"job id prefix {job_id!r} is ambiguous", hint="give more characters of the id"
            )
        if not rows:
            raise NotFoundError(
                f"no job {job_id!r} in the ledger", hint="'runctl jobs list' shows the job ids"
            )
        return _job(rows[0])

    def list_jobs(
        self,
        *,
        name: str | None = None,
        states: Sequence[str] | None = None,
        provider: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs, newest first."""
        clauses, params = _filters(name=name, provider=provider, states=states)
        sql = f"SELECT * FROM jobs {clauses} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_job(r) for r in self._query(sql, params)]

    # -- resources -----------------------------------------------------------------------------

    def record_intent(
        self,
        *,
        provider: str,
        kind: str,
        job_id: str | None = None,
        spec: dict[str, Any] | None = None,
        region: str | None = None,
        zone: str | None = None,
        persistent: bool = False,
    ) -> Resource:
        """Write the row for a resource about to be created (state ``intent``, fresh token)."""
        resource_id = new_id("r")
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO resources (id, job_id, provider, kind, client_token, state, region,"
                " zone, spec, persistent, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    resource_id,
                    job_id,
                    provider,
                    kind,
                    f"runctl-{resource_id}-{secrets.token_hex(8)}",
                    "intent",
                    region,
                    zone,
                    json.dumps(spec or {}),
                    int(persistent),
                    now,
                    now,
                ),
            )
            self._insert_event(
                conn,
                "resource.intent",
                f"about to create {provider} {kind}",
                job_id,
                resource_id,
                spec,
            )
        return self.get_resource(resource_id)

    def mark_created(
        self,
        resource_id: str,
        *,
        cloud_id: str,
        state: str,
        billable: bool,
        rate_usd_per_hour: float | None = None,
        zone: str | None = None,
    ) -> Resource:
        """Fill in what the cloud answered for an ``intent`` row."""
        _check_rate(rate_usd_per_hour)
        with self._tx() as conn:
            conn.execute(
                "UPDATE resources SET cloud_id = ?, rate_usd_per_hour = COALESCE(?,"
                " rate_usd_per_hour), zone = COALESCE(?, zone), updated_at = ? WHERE id = ?",
                (cloud_id, rate_usd_per_hour, zone, time.time(), resource_id),
            )
            self._transition(conn, resource_id, state, billable, f"created as {cloud_id}")
        return self.get_resource(resource_id)

    def transition(
        self,
        resource_id: str,
        state: str,
        *,
        billable: bool,
        detail: str | None = None,
        expect: str | None = None,
    ) -> Resource:
        """Record a new state; open or close the usage interval to match ``billable``.

        ``expect``: change the row only if it is still in that state (compare-and-set, for a
        writer acting on an earlier read, such as reconcile); otherwise leave it as it is.
        """
        if expect is None:
            with self._tx() as conn:
                self._transition(conn, resource_id, state, billable, detail)
        else:
            self.claim(resource_id, expect=expect, state=state, billable=billable, detail=detail)
        return self.get_resource(resource_id)

    def claim(
        self, resource_id: str, *, expect: str, state: str, billable: bool, detail: str | None = None
    ) -> bool:
        """Compare-and-set: move the resource from ``expect`` to ``state`` in one transaction.

        Returns False (and changes nothing) if another writer moved it first, so of several
        processes acting on the same row exactly one wins.
        """
        with self._tx() as conn:
            current = conn.execute("SELECT state FROM resources WHERE id = ?", (resource_id,)).fetchone()
            if current is not None and current["state"] != expect:
                return False
            self._transition(conn, resource_id, state, billable, detail)
            return True

    def update_spec(self, resource_id: str, **fields: Any) -> Resource:
        """Merge ``fields`` into a resource's spec (what was actually placed, where its rate came
        from): facts learnt after the intent row was written."""
        with self._tx() as conn:
            row = conn.execute("SELECT spec FROM resources WHERE id = ?", (resource_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no resource {resource_id!r} in the ledger")
            spec = {**json.loads(row["spec"]), **fields}
            conn.execute(
                "UPDATE resources SET spec = ?, updated_at = ? WHERE id = ?",
                (json.dumps(spec), time.time(), resource_id),
            )
        return self.get_resource(resource_id)

    def set_rate(self, resource_id: str, rate_usd_per_hour: float) -> None:
        """A new rate from now on (e.g. a refreshed spot price): splits the open interval."""
        _check_rate(rate_usd_per_hour)
        with self._tx() as conn:
            now = time.time()
            conn.execute(
                "UPDATE resources SET rate_usd_per_hour = ?, updated_at = ? WHERE id = ?",
                (rate_usd_per_hour, now, resource_id),
            )
            open_row = conn.execute(
                "SELECT id, job_id FROM usage WHERE resource_id = ? AND ended_at IS NULL",
                (resource_id,),
            ).fetchone()
            if open_row:
                conn.execute("UPDATE usage SET ended_at = ? WHERE id = ?", (now, open_row["id"]))
                conn.execute(
                    "INSERT INTO usage (resource_id, job_id, started_at, rate_usd_per_hour) VALUES (?,?,?,?)",
                    (resource_id, open_row["job_id"], now, rate_usd_per_hour),
                )

    def _transition(
        self,
        conn: sqlite3.Connection,
        resource_id: str,
        state: str,
        billable: bool,
        detail: str | None,
    ) -> None:
        row = conn.execute(
            "SELECT state, job_id, rate_usd_per_hour FROM resources WHERE id = ?", (resource_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no resource {resource_id!r} in the ledger")
        now = time.time()
        conn.execute("UPDATE resources SET state = ?, updated_at = ? WHERE id = ?", (state, now, resource_id))
        open_interval = conn.execute(
            "SELECT id FROM usage WHERE resource_id = ? AND ended_at IS NULL", (resource_id,)
        ).fetchone()
        if billable and open_interval is None:
            conn.execute(
                "INSERT INTO usage (resource_id, job_id, started_at, rate_usd_per_hour) VALUES (?,?,?,?)",
                (resource_id, row["job_id"], now, row["rate_usd_per_hour"] or 0.0),
            )
        elif not billable and open_interval is not None:
            conn.execute("UPDATE usage SET ended_at = ? WHERE id = ?", (now, open_interval["id"]))
        message = f"{row['state']} -> {state}" + (f": {detail}" if detail else "")
        self._insert_event(conn, "resource.state", message, row["job_id"], resource_id, None)

    def get_resource(self, resource_id: str) -> Resource:
        rows = self._query("SELECT * FROM resources WHERE id = ?", [resource_id])
        if not rows:
            raise NotFoundError(
                f"no resource {resource_id!r} in the ledger",
                hint="'runctl resources list' shows the resource ids",
            )
        return _resource(rows[0])

    def find_resource(self, provider: str, cloud_id: str) -> Resource | None:
        rows = self._query(
            "SELECT * FROM resources WHERE provider = ? AND cloud_id = ?", [provider, cloud_id]
        )
        return _resource(rows[0]) if rows else None

    def list_resources(
        self,
        *,
        job_id: str | None = None,
        provider: str | None = None,
        states: Sequence[str] | None = None,
        include_gone: bool = True,
    ) -> list[Resource]:
        clauses, params = _filters(job_id=job_id, provider=provider, states=states)
        if not include_gone:
            clauses += (" AND " if clauses else "WHERE ") + (
                f"state NOT IN ({','.join('?' * len(GONE_RESOURCE_STATES))})"
            )
            params.extend(GONE_RESOURCE_STATES)
        rows = self._query(f"SELECT * FROM resources {clauses} ORDER BY created_at", params)
        return [_resource(r) for r in rows]

    # -- usage ---------------------------------------------------------------------------------

    def usage(self, *, job_id: str | None = None, resource_id: str | None = None) -> list[UsageInterval]:
        clauses, params = _filters(job_id=job_id, resource_id=resource_id)
        rows = self._query(f"SELECT * FROM usage {clauses} ORDER BY started_at", params)
        return [
            UsageInterval(
                resource_id=r["resource_id"],
                job_id=r["job_id"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
                rate_usd_per_hour=r["rate_usd_per_hour"],
            )
            for r in rows
        ]


def _create(path: Path) -> None:
    """A new, empty ledger at ``path`` (0600, WAL, header written), appearing there all at once:
    built under a temporary name and hard-linked into place; if another process made one
    meanwhile, that one is kept."""
    import os

    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.chmod(temp, 0o600)  # the umask may have removed bits, never added: make it exact
        conn = sqlite3.connect(temp)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # writes the header: the file is a database now
        finally:
            conn.close()
        try:
            os.link(temp, path)
        except FileExistsError:
            return  # another runctl created it first: use that one
        except OSError:  # a file system without hard links: a plain rename, if still free
            if not path.exists():
                os.rename(temp, path)
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-wal"), temp.with_name(temp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _check_rate(rate: float | None) -> None:
    """A rate is a finite, non-negative number: cost is Σ(interval × rate), and one ``inf`` or
    ``nan`` would make every total that includes it meaningless (and ``jobs list -o json`` invalid)."""
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise ValidationError(
            f"hourly rate {rate!r} is not a finite, non-negative number of USD",
            hint="check the price it came from ([local] rate_usd_per_hour, the provider's price list)",
        )


def _redacted(value: Any) -> Any:
    """``value`` (event data) with every string in it redacted; its shape is kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _filters(**conditions: Any) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for column, value in conditions.items():
        if value is None:
            continue
        if column == "states":
            parts.append(f"state IN ({','.join('?' * len(value))})")
            params.extend(value)
        else:
            parts.append(f"{column} = ?")
            params.append(value)
    return ("WHERE " + " AND ".join(parts) if parts else ""), params


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["args"] = json.loads(data["args"])
    data["cancel_requested"] = bool(data["cancel_requested"])
    data["request"] = json.loads(data["request"]) if data.get("request") else None
    return Job(**data)


def _resource(row: sqlite3.Row) -> Resource:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    data["persistent"] = bool(data["persistent"])
    return Resource(**data)
