"""``runctl agent run``: the job, on its machine, from code download to the final status.

1. Fetch the code bundle (if the controller uploaded one) into the work directory.
2. Resume: the latest *complete* checkpoint in storage is downloaded and passed as
   ``RUNCTL_RESUME_FROM`` (a published checkpoint has its manifest; half-uploads never count).
3. Run the script under :class:`runctl.core.shutdown.Supervisor`, exactly as ``runctl local``
   does (same run contract), with a heartbeat every few seconds that uploads new checkpoints,
   log chunks and ``status.json``.
4. Interruptions: a spot notice from IMDS (polled every 5 s) or a SIGTERM from the OS (shutdown)
   stops the script gracefully; the grace period is cut to what the notice leaves minus a safety
   margin kept for the final upload. The job is then ``preempted`` — also when the script got
   the same SIGTERM, saved and exited 0 before the agent looked (the signal is never lost).
   A stop request from the controller (``control/stop.json`` in storage, read every heartbeat:
   the job reached its ``[cost] max_cost_usd``) stops the script the same graceful way; the job
   is then ``cancelled`` (exit code 79) with the request's reason as detail.
   Before the script: ``--setup`` once per machine and ``--python`` (:mod:`runctl.agent.setup`).
   With ``--hang-timeout`` the hang watchdog (:mod:`runctl.agent.watchdog`) looks at the
   script's progress every heartbeat; a hung script is stopped the same graceful way and the
   attempt ends ``hung`` (exit code 124); the controller's recovery policy may restart it.
5. Final sync (checkpoints, log, outputs) and the final status. Outcomes: ``succeeded``,
   ``failed`` (script exit ≠ 0), ``preempted``, ``timed_out``, ``hung``, ``cancelled`` (SIGINT, or the
   controller's stop), ``failed_setup`` (code or checkpoint could not be fetched). A final state
   written to storage is never rewritten by a later error.
   The agent notifies ``preempted`` and ``hung`` itself, to the URLs the controller left in the
   job's storage (``control/notify.json``; :mod:`runctl.clients.notify`).
6. Dead-man switch: stop or terminate the machine (``--on-exit``), unless ``--keep``; with
   ``--keep`` and ``--idle-timeout``, after that long idle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, cast

from runctl.agent.contract import contract_env
from runctl.agent.deps import Deps, project_python
from runctl.agent.imds import Imds, InterruptionNotice, InterruptionWatcher
from runctl.agent.machine import Ec2Machine, MachineControl, NoMachine
from runctl.agent.script import classify, command_for
from runctl.agent.setup import run_setup, with_helper
from runctl.agent.sync import CHECKPOINTS_PREFIX, CODE_KEY, ENV_KEY, NOTIFY_KEY, JobSync
from runctl.agent.timings import FirstOutput, bootstrap_seconds
from runctl.agent.watchdog import HangWatch
from runctl.clients.notify import Notifier
from runctl.core.errors import ExitCode, RunctlError
from runctl.core.paths import create_private_file, make_private_dirs
from runctl.core.shutdown import ChildOutcome, Supervisor
from runctl.storage.archive import safe_extract
from runctl.storage.base import Storage

log = logging.getLogger("runctl.agent")

OnExit = Literal["none", "stop", "terminate"]
#: Outcomes the agent notifies itself (``[notify] urls``), also with the controller gone.
NOTIFIED = {"preempted": "preempted", "hung": "hung"}


@dataclass
class AgentOptions:
    """Everything ``runctl agent run`` is told by the controller (or a user)."""

    job_id: str
    script: str
    args: list[str] = field(default_factory=list)
    job_name: str | None = None
    attempt: int = 1
    resume: bool = True
    workdir: Path = Path("runctl-work")
    grace_period: float = 30.0
    max_duration: float | None = None
    heartbeat: float = 5.0
    keep_last_n: int | None = None
    watch_spot: bool = False
    spot_poll_interval: float = 5.0
    spot_margin: float = 20.0
    on_exit: OnExit = "none"
    keep: bool = False
    idle_timeout: float | None = None
    python: str | None = None  # the script's interpreter (--python)
    setup: str | None = None  # run once per machine before the script (--setup)
    setup_timeout: float = 3600.0
    deps: Deps = "none"  # "auto": build the project's dependencies (runctl.agent.deps)
    hang_timeout: float | None = None  # the watchdog is off without it
    hang_gpu_util: float = 5.0


@dataclass
class AgentResult:
    state: str
    exit_code: int
    detail: str | None
    error: RunctlError | None = None  # why the job could not even start (``failed_setup``)


def _extract_code(storage: Storage, workdir: Path) -> Path:
    """The code directory: the bundle unpacked if there is one, else the work directory."""
    code = workdir / "code"
    if not storage.exists(CODE_KEY):
        return make_private_dirs(code)
    bundle = storage.get_file(CODE_KEY, workdir / CODE_KEY)
    safe_extract(bundle, code, what="code bundle")
    return code


def _job_variables(storage: Storage) -> dict[str, str]:
    """The job's ``--env``/``--secret`` variables (:mod:`runctl.workflows.job_env`), secrets
    registered for masking before anything could log them."""
    from runctl.core import secrets

    document = storage.read_json(ENV_KEY) or {}
    variables = {str(k): str(v) for k, v in (document.get("variables") or {}).items()}
    secrets.register_all(variables[name] for name in document.get("secrets") or [] if name in variables)
    return variables


def _resume_point(storage: Storage, workdir: Path) -> Path | None:
    record = storage.latest_checkpoint(CHECKPOINTS_PREFIX)
    if record is None:
        return None
    log.info("resuming from checkpoint %s (step %s)", record.name, record.step)
    return storage.fetch_checkpoint(record, workdir / "resume")


def run_agent(
    options: AgentOptions,
    storage: Storage,
    *,
    machine: MachineControl | None = None,
    imds: Imds | None = None,
) -> AgentResult:
    """Run the job to its end and record everything in ``storage`` (see module docstring)."""
    from runctl.core.config import Config, LocalConfig

    workdir = options.workdir.absolute()
    checkpoint_dir = workdir / "checkpoints"
    output_dir = workdir / "outputs"
    for directory in (checkpoint_dir, output_dir):
        make_private_dirs(directory)
    log_path = create_private_file(workdir / f"attempt-{options.attempt}.log")
    if machine is None and imds is not None:
        try:
            machine = Ec2Machine(imds)
        except OSError as exc:  # no IMDS here: not an EC2 machine after all
            log.warning("instance metadata unreachable (%s): no spot watch, no dead-man switch", exc)
            imds = None
    machine = machine or NoMachine()
    status: dict[str, object] = {
        "job_id": options.job_id,
        "attempt": options.attempt,
        "state": "starting",
        "started_at": time.time(),
        "machine": machine.describe(),
        "exit_code": None,
    }
    timings: dict[str, float] = {}
    bootstrap = bootstrap_seconds(Path.cwd())
    if bootstrap is not None:
        timings["bootstrap_s"] = bootstrap
    status["timings"] = timings
    sync = JobSync(storage, checkpoint_dir, log_path, status, keep_last_n=options.keep_last_n)
    sync.write_status()

    try:
        code = _extract_code(storage, workdir)
        resume_from = _resume_point(storage, workdir) if options.resume else None
        script = Path(options.script)
        script = script if script.is_absolute() else code / script
        variables = _job_variables(storage)
        prepare_env = {**os.environ, **variables, "RUNCTL_JOB_ID": options.job_id}
        timeout = options.setup_timeout
        python = options.python
        if options.setup:
            took = run_setup(options.setup, cwd=code, log_path=log_path, timeout=timeout, env=prepare_env)
            if took is not None:
                timings["setup_s"] = round(took, 3)
        elif python is None and options.deps == "auto":
            python, took = project_python(code, script, log_path=log_path, timeout=timeout, env=prepare_env)
            if took is not None:
                timings["deps_s"] = round(took, 3)
        argv = [*command_for(script, Config(local=LocalConfig(python=python))), *options.args]
    except RunctlError as exc:
        sync.write_status(state="failed_setup", detail=str(exc), ended_at=time.time())
        _dead_man(options, machine)
        return AgentResult("failed_setup", int(exc.exit_code), str(exc), error=exc)

    env = contract_env(
        with_helper({**os.environ, **variables}, python),
        job_id=options.job_id,
        job_name=options.job_name or script.stem,
        checkpoint_dir=checkpoint_dir,
        attempt=options.attempt,
        resume_from=resume_from,
        keep_last_n=options.keep_last_n,
        output_dir=output_dir,
        progress_file=workdir / "progress",
    )
    stop_reasons: list[str] = []  # the controller's stop request, once read
    hung: list[str] = []  # the watchdog's verdict, once given
    watch = (
        None
        if options.hang_timeout is None
        else HangWatch(
            options.hang_timeout,
            log_path=log_path,
            checkpoint_dir=checkpoint_dir,
            progress_file=workdir / "progress",
            gpu_util=options.hang_gpu_util,
        )
    )

    def heartbeat() -> None:
        sync.tick()
        if not stop_reasons and (reason := sync.stop_request()) is not None:
            stop_reasons.append(reason)
            supervisor.request_stop(reason)
        if watch is not None and not hung and not stop_reasons and (reason := watch.check()) is not None:
            log.warning("%s: stopping the script", reason)
            hung.append(reason)
            supervisor.request_stop(reason)

    first_output = FirstOutput(
        sys.stdout.buffer, lambda seconds: timings.__setitem__("first_output_s", round(seconds, 3))
    )

    def on_start(pid: int) -> None:
        first_output.started = time.monotonic()
        sync.write_status(state="running", pid=pid, resumed_from=str(resume_from) if resume_from else None)

    supervisor = Supervisor(
        argv,
        env=env,
        cwd=code,
        grace_period=options.grace_period,
        max_duration=options.max_duration,
        log_path=log_path,
        echo=cast("BinaryIO", first_output),
        on_start=on_start,
        on_tick=heartbeat,
        tick_interval=options.heartbeat,
    )
    watcher = None
    if options.watch_spot and imds is not None:

        def on_notice(notice: InterruptionNotice) -> None:
            left = notice.seconds_left()
            grace = None if left is None else max(1.0, left - options.spot_margin)
            status["interruption"] = {"action": notice.action, "time": str(notice.time)}
            supervisor.request_stop(f"spot interruption notice ({notice.action})", grace_period=grace)

        watcher = InterruptionWatcher(imds, on_notice, interval=options.spot_poll_interval).start()
    try:
        outcome = supervisor.run()
    finally:
        if watcher:
            watcher.stop()
    state, exit_code, detail = (
        ("hung", int(ExitCode.TIMEOUT), f"{hung[0]}; {outcome.exit_detail}")
        if hung
        else _classify(outcome, stopped_for=next(iter(stop_reasons), None))
    )
    try:
        sync.final(output_dir, state=state, exit_code=exit_code, detail=detail, ended_at=time.time())
    except (RunctlError, OSError) as exc:
        log.error("final upload failed: %s", exc)
        detail = f"{detail or state}; final upload failed: {exc}"
        # if storage is gone altogether, the controller classifies from the machine's state
        with contextlib.suppress(RunctlError, OSError):
            sync.write_status(state=state, exit_code=exit_code, detail=detail, ended_at=time.time())
    if state in NOTIFIED:  # what only this machine sees
        notifier = Notifier(_notify_urls(storage))
        title = f"runctl: job {NOTIFIED[state]}"
        name = options.job_name or script.stem
        body = f"job {options.job_id} ({name}) attempt {options.attempt} {state}: {detail}"
        notifier.send(f"{options.job_id}-attempt-{options.attempt}-{state}", title, body)
    _dead_man(options, machine)
    return AgentResult(state, exit_code, detail)


def _notify_urls(storage: Storage) -> list[str]:
    """The job's apprise URLs, if the controller left any (unreadable: none, with a warning)."""
    try:
        found = storage.read_json(NOTIFY_KEY) or {}
    except (RunctlError, OSError) as exc:
        log.warning("could not read the notification settings from storage: %s", exc)
        return []
    return [str(u) for u in found.get("urls", [])] if isinstance(found, dict) else []


def _classify(outcome: ChildOutcome, *, stopped_for: str | None = None) -> tuple[str, int, str | None]:
    """Local classification, plus: a spot notice or a signal from the OS (SIGTERM, SIGHUP) means
    ``preempted``; SIGINT (a person) or the controller's stop request (``stopped_for``, a limit)
    means ``cancelled``. A script that exits 0 after it was asked to stop is never
    ``succeeded`` — its work is not done, and a succeeded job is never resumed; the detail keeps
    its exit code."""
    if stopped_for is not None:
        return classify(outcome, cancelled=False, stopped_for=stopped_for)
    received = outcome.signal_received
    if outcome.stop_reason is not None or received not in (None, signal.SIGINT):
        name = signal.Signals(received).name if received is not None else ""
        why = outcome.stop_reason or f"the machine is shutting down ({name})"
        return "preempted", int(ExitCode.SIGTERM), f"{why}; {outcome.exit_detail}"
    if received == signal.SIGINT:
        return "cancelled", int(ExitCode.SIGINT), f"stopped by SIGINT; {outcome.exit_detail}"
    return classify(outcome, cancelled=False)


def _dead_man(options: AgentOptions, machine: MachineControl) -> None:
    if options.on_exit == "none":
        return
    if options.keep:
        if options.idle_timeout is None:
            return
        log.info("--keep: the machine stays up for %ss idle", options.idle_timeout)
        time.sleep(options.idle_timeout)
    try:
        machine.shut_down(options.on_exit)
    except RunctlError as exc:
        log.error("dead-man switch could not %s this machine: %s", options.on_exit, exc)
