"""``runctl jobs list|show|cancel``, ``runctl logs``, ``runctl events``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

#: The most rows a listing asks for (SQLite's LIMIT is a 64-bit integer; no ledger holds more).
MAX_LIMIT = 1_000_000

app = typer.Typer(help="List, inspect and cancel jobs.", no_args_is_help=True)


def _job_row(job: Any, cost: float) -> dict[str, Any]:
    return {**job.to_dict(), "cost_usd": round(cost, 6)}


def _environment(request: dict[str, Any] | None) -> str | None:
    """A remote job's environment as submitted: interpreter, setup, deps, variable names."""
    if not request:
        return None
    parts = []
    if request.get("python"):
        parts.append(f"python {request['python']}")
    if request.get("setup"):
        parts.append(f"setup {request['setup']!r}")
    elif not request.get("python") and request.get("deps"):
        parts.append(f"deps {request['deps']}")
    secret = set(request.get("secret_names") or [])
    names = sorted(request.get("variables") or {})
    if names:
        parts.append("env " + ", ".join(f"{n} (secret)" if n in secret else n for n in names))
    return "; ".join(parts) or None


def _ledger_with_local_reconciled() -> Any:
    from runctl.workflows.local import lost_message, reconcile_local_jobs

    ledger = STATE.ledger()
    for job in reconcile_local_jobs(ledger):
        render.info(lost_message(job))
    return ledger


@app.command("list")
def list_jobs(
    name: Annotated[str | None, typer.Option(help="Only jobs with this name.")] = None,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many, newest first.")] = 50,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List jobs, newest first."""
    from runctl.core.cost import job_cost

    ledger = _ledger_with_local_reconciled()
    jobs = ledger.list_jobs(name=name, states=[state] if state else None, limit=limit)
    rows = [_job_row(job, job_cost(ledger, job.id)) for job in jobs]
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    now = time.time()
    render.table(
        None,
        ["ID", "NAME", "PROVIDER", "STATE", "ATTEMPT", "STARTED", "ELAPSED", "EXIT", "COST"],
        [
            (
                r["id"],
                r["name"],
                r["provider"],
                r["state"],
                r["attempt"],
                render.when(r["started_at"] or r["created_at"]),
                render.duration((r["ended_at"] or now) - (r["started_at"] or r["created_at"])),
                r["exit_code"],
                render.usd(r["cost_usd"]),
            )
            for r in rows
        ],
    )


def _remote_status(job: Any) -> dict[str, Any] | None:
    """The agent's heartbeat from a remote job's storage (None for local jobs or if unreadable)."""
    if not job.storage_url:
        return None
    from runctl.agent.sync import STATUS_KEY
    from runctl.core.errors import RunctlError
    from runctl.storage import open_storage

    try:
        return open_storage(job.storage_url, STATE.loaded().config.storage).read_json(STATUS_KEY)
    except RunctlError as exc:
        render.info(f"could not read the job's status from storage: {exc}")
        return None


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id (or a unique prefix).")],
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show one job: state, exit code, checkpoints, log, cost, recovery decisions, recent events."""
    from runctl.core.cost import job_cost
    from runctl.core.recovery import DECISION_EVENTS

    ledger = _ledger_with_local_reconciled()
    job = ledger.get_job(job_id)
    data = _job_row(job, job_cost(ledger, job.id))
    data["resources"] = [r.to_dict() for r in ledger.list_resources(job_id=job.id)]
    every = ledger.events(job_id=job.id, limit=100_000)
    kinds = [e.kind for e in every]
    data["preemptions"] = kinds.count("job.preemption")
    data["restarts"] = kinds.count("job.restart")
    data["decisions"] = [e.to_dict() for e in every if e.kind in DECISION_EVENTS]  # recovery, with why
    data["events"] = [e.to_dict() for e in ledger.events(job_id=job.id, limit=20)]
    data["remote_status"] = _remote_status(job)
    if output is OutputFormat.json:
        render.print_json(data)
        return
    remote = data["remote_status"] or {}
    render.fields(
        [
            *(
                [
                    (
                        "agent",
                        f"{remote.get('state')} (attempt {remote.get('attempt')}, "
                        f"last checkpoint {(remote.get('last_checkpoint') or {}).get('name')})",
                    )
                ]
                if remote
                else []
            ),
            ("id", job.id),
            ("name", job.name),
            ("provider", job.provider),
            ("state", job.state),
            ("detail", job.detail),
            ("exit code", job.exit_code),
            ("attempt", f"{job.attempt} ({data['preemptions']} preemptions, {data['restarts']} restarts)"),
            ("script", " ".join([job.script, *job.args])),
            *([("environment", env)] if (env := _environment(job.request)) else []),
            ("created", render.when(job.created_at)),
            ("started", render.when(job.started_at)),
            ("ended", render.when(job.ended_at)),
            ("checkpoint dir", job.checkpoint_dir),
            ("resumed from", job.resume_from),
            ("last checkpoint", job.last_checkpoint),
            ("log", job.log_path),
            ("cost", render.usd(data["cost_usd"])),
        ]
    )
    if data["decisions"]:
        render.console().print("recovery decisions:", highlight=False)
    for event in data["decisions"]:
        render.console().print(
            f"  [dim]{render.when(event['ts'])}[/]  {event['message']}", markup=True, highlight=False
        )
    if data["events"]:
        render.console().print("recent events:", highlight=False)
    for event in data["events"]:
        render.console().print(
            f"  [dim]{render.when(event['ts'])}[/]  {event['message']}", markup=True, highlight=False
        )


@app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id (or a unique prefix).")],
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Stop a running job gracefully (it saves its checkpoint) and record it as cancelled."""
    from runctl.workflows.jobs import cancel_job

    job = cancel_job(STATE.ledger(), job_id)
    if output is OutputFormat.json:
        render.print_json(job.to_dict())
    else:
        render.info(f"job {job.id}: {job.state}")


def logs(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id (or a unique prefix).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """Print a job's log (stdout and stderr of its script)."""
    from runctl.core.errors import NotFoundError
    from runctl.workflows.jobs import follow_log

    ledger = STATE.ledger()
    job = ledger.get_job(job_id)
    out = sys.stdout.buffer
    if job.storage_url:  # a remote job: its log is in storage, in chunks
        from runctl.storage import open_storage
        from runctl.workflows.jobs import follow_remote_log, remote_job_ended

        storage = open_storage(job.storage_url, STATE.loaded().config.storage)

        def remote_ended() -> bool:
            current = ledger.get_job(job.id)
            return current.is_final or remote_job_ended(storage, current)

        for chunk in follow_remote_log(storage, until=remote_ended, follow=follow):
            out.write(chunk)
            out.flush()
        return
    if not job.log_path:
        raise NotFoundError(f"job {job.id} has no log", hint="it may not have started")
    path = Path(job.log_path)
    if not follow:
        if not path.exists():
            raise NotFoundError(
                f"log file {path} does not exist", hint="it was removed, or the job never started"
            )
        rotated = path.with_name(path.name + ".1")  # the older part, if [local] max_log_size rotated it
        for part in (rotated, path) if rotated.exists() else (path,):
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 16):
                    out.write(chunk)
        out.flush()
        return
    from runctl.workflows.local import reconcile_local_jobs

    def ended() -> bool:
        reconcile_local_jobs(ledger)  # a runner that died never records an end: mark it lost
        return ledger.get_job(job.id).is_final

    for chunk in follow_log(path, until=ended):
        out.write(chunk)
        out.flush()


def events(
    job_id: Annotated[str | None, typer.Option("--job", help="Only this job's events.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="The most recent N events.")] = 50,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show the ledger's event log (oldest of the selection first)."""
    ledger = STATE.ledger()
    if job_id:
        job_id = ledger.get_job(job_id).id
    rows = [e.to_dict() for e in ledger.events(job_id=job_id, limit=limit)]
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    render.table(
        None,
        ["TIME", "KIND", "JOB", "RESOURCE", "MESSAGE"],
        [(render.when(r["ts"]), r["kind"], r["job_id"], r["resource_id"], r["message"]) for r in rows],
    )
