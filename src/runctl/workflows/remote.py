"""Remote training, provider-neutral: create → sync code → start the agent → wait → collect →
release, with auto-resume after preemptions and restarts after failures.

The controller never needs a shell on the machine: it reads the job's ``status.json``, log
chunks and checkpoints from storage (:mod:`runctl.agent.sync` has the layout) and the machine's
state from the provider's API. One job keeps one id over all its attempts; every attempt's
machine is a ledger resource of the job.

Outcomes (the job's final ledger state; a final state is never overwritten by a later cleanup
error):

* ``succeeded`` / ``failed`` — the script's exit code, from the agent's final status;
* ``preempted`` — the agent saw a spot notice or an OS shutdown, *or* the machine vanished
  (terminated, stopped) while the job was running;
* ``no_capacity`` — no zone or market could place the machine (within ``capacity_wait``);
* ``hung`` — the agent's watchdog saw no progress, and ``max_hang_restarts`` is used up;
* ``time_limit`` — the job reached ``[recovery] max_total_duration`` (stopped gracefully,
  checkpoints kept; exit code 124);
* ``failed_setup`` — the code bundle or the agent could not be set up, or the agent missed
  ``[remote] agent_start_timeout`` (:mod:`runctl.workflows.remote_deadlines`);
* ``failed_precheck`` — config, credentials or input refused before anything was created
  (never retried);
* ``cancelled`` — the user stopped it (``--on-interrupt stop|terminate``), or the job reached
  ``[cost] max_cost_usd`` (exit code 79, the detail names the limit; checkpoints kept).

Cost (:mod:`runctl.core.budget`): every machine of every attempt goes through the one launch path
(:mod:`runctl.workflows.launch`): the estimate is shown (``$/h``, and the worst case over
``--max-duration``) and checked against the ``[cost]`` limits — refused with
:class:`BudgetError` before any mutating call unless ``over_budget``. While the job runs the
controller re-reads its machine's price every ``[cost] rate_refresh_interval`` (spot prices
move; :meth:`ComputeProvider.refresh_rate`) and watches the job's cost: at ``max_cost_usd`` it
writes a stop request into the job's storage (:func:`runctl.agent.sync.request_stop`) that the
agent's heartbeat turns into a graceful stop (SIGTERM, checkpoint, final sync). If the agent has
not ended the job within the grace period plus three heartbeats and a minute, the controller
releases the machine (the OS shutdown still gives the script its SIGTERM).

What happens after an attempt ends early is the job's recovery policy (``[recovery]``, stored
with the request; :mod:`runctl.core.recovery` decides and says why, each decision a ledger
event). Auto-resume (``--auto-resume``): on ``preempted`` a replacement of the same type and
market is launched and the agent resumes from the latest complete checkpoint in storage
(attempt + 1); after ``max_preemptions`` spot preemptions the replacement is on-demand.
``max_restarts`` (and ``restart_on_exit_codes``, ``max_hang_restarts``) allow re-running after a
failure, on the same machine when it is still up. A placement refused for capacity waits up
to ``capacity_wait`` (the job ``pending``, or between attempts) before ``no_capacity``.

The request is stored on the job (``Job.request``): ``runctl jobs wait JOB`` reattaches with all
of it — the machine spec to relaunch with, limits, ``--keep``, grace period, outputs — and only
``--auto-resume`` and the poll interval can be given anew.

Ctrl-C on the controller (``on_interrupt``): ``detach`` (default) leaves the job running and
prints how to reattach (``runctl jobs wait JOB``) — once the agent has written a heartbeat;
before that the machine is released (an agent that never started must not bill);
``terminate`` terminates the machine — the agent
gets SIGTERM from the OS shutdown and saves — and records ``cancelled``; ``stop`` stops the
machine the same way but keeps it (and its disk) and leaves the job ``stopped``, a state that is
not final: ``runctl jobs resume JOB`` starts the machine again and sends the agent as attempt + 1
from the latest checkpoint in storage. Only a machine the provider can stop and start again may
be asked for that (an on-demand EC2 instance; not a spot instance, not a RunPod pod): the
combination is refused at submit, before anything is created.

The agent is started detached (``setsid nohup``) so the provider's command channel (SSM's
execution timeout, a pod's start command) never bounds the job. The start script ships the
controller's own runctl onto the machine, SHA-256-checked, into the agent's own virtualenv
(:mod:`runctl.workflows.agent_shipping`; ``[remote] agent_source``).
"""

from __future__ import annotations

import math
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

from runctl.agent.deps import DEPS
from runctl.agent.storage_settings import agent_storage_env
from runctl.agent.sync import CODE_KEY, NOTIFY_KEY, STATUS_KEY, read_log, request_stop
from runctl.core.budget import JobBudgetWatch
from runctl.core.config import Config, RecoveryConfig
from runctl.core.errors import (
    AuthError,
    BudgetError,
    CapacityError,
    ConfigError,
    ExitCode,
    QuotaError,
    RetryExhaustedError,
    RunctlError,
    UnsupportedError,
    ValidationError,
)
from runctl.core.ledger import GONE_RESOURCE_STATES, Job, Ledger, Resource
from runctl.core.lifecycle import Lifecycle
from runctl.core.recovery import TIME_LIMIT, Decision, Recovery, capacity_retry
from runctl.core.testhooks import crash_point
from runctl.core.units import duration
from runctl.providers.base import ComputeProvider, Machine, MachineSpec
from runctl.storage import Storage, open_storage
from runctl.workflows import agent_shipping, job_env, launch
from runctl.workflows.bundle import build_bundle
from runctl.workflows.local import validate_name
from runctl.workflows.notices import JobNotices
from runctl.workflows.remote_deadlines import (
    AgentStartWatch,
    end_on_error,
    fail_agent_start,
    release_before_detach,
)
from runctl.workflows.remote_timings import record_timings

OnInterrupt = Literal["detach", "stop", "terminate"]
ON_INTERRUPT: tuple[OnInterrupt, ...] = ("detach", "stop", "terminate")
AGENT_STATES_FINAL = frozenset(
    {"succeeded", "failed", "preempted", "cancelled", "timed_out", "failed_setup", "hung"}
)
#: The job state of a remote job whose machine was stopped on purpose (not final: jobs resume).
STOPPED = "stopped"
#: Seconds the controller gives the agent, beyond grace + 3 heartbeats, to act on a stop request.
STOP_SLACK_S = 60.0
HEARTBEAT_EVENT_INTERVAL_S = 30.0
PRECHECK_ERRORS = (ConfigError, AuthError, QuotaError, ValidationError)

@dataclass
class RemoteTrain:
    """What to train where. ``machine`` reuses an existing machine; else ``spec`` creates one."""

    script: str
    args: list[str] = field(default_factory=list)
    name: str | None = None
    project_dir: Path = Path(".")
    sync_code: bool = True
    machine: str | None = None
    spec: MachineSpec | None = None
    wait: bool = True
    auto_resume: bool = False
    recovery: RecoveryConfig | None = None  # None: the config's [recovery], resolved at submit
    on_interrupt: OnInterrupt = "detach"
    grace_period: float = 30.0
    max_duration: float | None = None
    keep_last_n: int | None = None
    heartbeat: float = 5.0
    keep_machine: bool = False
    release_at_end: bool = False
    outputs_to: Path | None = None
    poll_interval: float = 5.0
    env: dict[str, str] = field(default_factory=dict)  # extra variables for the script
    setup: str | None = None  # run once per machine before the script (runctl.agent.setup)
    python: str | None = None  # the script's interpreter on the machine
    deps: str = "auto"  # build the project's dependencies when no --python/--setup (agent.deps)
    # --env/--secret: through the job's storage only; the ledger keeps their names
    variables: dict[str, str] = field(default_factory=dict, repr=False)
    secret_names: list[str] = field(default_factory=list)
    over_budget: bool = False  # launch even when a [cost] limit refuses it
    notify: list[str] = field(default_factory=list)  # apprise URLs besides [notify]; never stored

    def notify_urls(self, config: Config) -> list[str]:
        """Where this job's notices go: ``[notify] urls`` plus ``--notify``."""
        return [*(u.get_secret_value() for u in config.notify.urls), *self.notify]

    def __post_init__(self) -> None:
        if self.on_interrupt not in ON_INTERRUPT:
            raise ValidationError(
                f"--on-interrupt {self.on_interrupt!r} is not one of {', '.join(ON_INTERRUPT)}",
                hint="detach (default), stop or terminate",
            )
        if self.deps not in DEPS:
            raise ValidationError(
                f"--deps {self.deps!r} is not one of {', '.join(DEPS)}", hint="auto or none"
            )

    def to_dict(self) -> dict[str, Any]:
        """The request as the ledger stores it with the job (JSON)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["project_dir"] = str(self.project_dir)
        data["outputs_to"] = None if self.outputs_to is None else str(self.outputs_to)
        data["spec"] = None if self.spec is None else self.spec.to_dict()
        data["variables"] = dict.fromkeys(sorted(self.variables), "(in the job's storage)")
        data["recovery"] = None if self.recovery is None else self.recovery.model_dump()
        del data["notify"]  # URLs carry tokens: not in the ledger
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteTrain:
        """The request stored with a job; keys a newer runctl wrote and this one lacks are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "variables"}
        values["project_dir"] = Path(values.get("project_dir") or ".")
        if values.get("outputs_to") is not None:
            values["outputs_to"] = Path(values["outputs_to"])
        if values.get("spec") is not None:
            values["spec"] = MachineSpec.from_dict(values["spec"])
        legacy = {k: data[k] for k in ("max_restarts", "max_preemptions") if k in data}  # before [recovery]
        if values.get("recovery") is not None or legacy:
            values["recovery"] = RecoveryConfig.model_validate({**legacy, **(values.get("recovery") or {})})
        return cls(**values)


@dataclass
class RemoteResult:
    job: Job
    exit_code: int


def remote_storage_root(config: Config) -> str:
    """Where remote jobs keep their files: ``[storage] uri``, else ``s3://[aws] s3_bucket/…``."""
    uri = config.storage.uri or (
        f"s3://{config.aws.s3_bucket}/{config.aws.s3_prefix.strip('/')}" if config.aws.s3_bucket else None
    )
    if uri is None or not uri.startswith("s3://"):
        raise ConfigError(
            "remote training needs storage the machine can reach (an S3 or S3-compatible bucket)",
            key="storage.uri",
            hint='set [storage] uri = "s3://BUCKET/PREFIX" (or [aws] s3_bucket) in .runctl.toml',
        )
    return uri.rstrip("/")


def job_storage(config: Config, job_id: str) -> Storage:
    return open_storage(f"{remote_storage_root(config)}/jobs/{job_id}", config.storage)


def agent_argv(
    job: Job,
    request: RemoteTrain,
    storage_url: str,
    *,
    attempt: int,
    on_exit: str | None = None,
    setup_timeout: float = 3600.0,
) -> list[str]:
    """The command the machine runs: the agent, with every user argument as its own argv item.

    The dead-man switch terminates the machine at the end unless ``keep_machine``; a container
    (``on_exit="none"``) stops billing its GPU by exiting, and the controller removes it.
    """
    argv = [
        "runctl",
        "agent",
        "run",
        "--job-id",
        job.id,
        "--storage",
        storage_url,
        "--name",
        job.name,
        "--attempt",
        str(attempt),
        "--grace-period",
        f"{request.grace_period}s",
        "--heartbeat",
        f"{request.heartbeat}s",
        "--on-exit",
        on_exit or _dead_man(request),
    ]
    if on_exit != "none":  # a machine of a cloud with IMDS (a container has none)
        argv.append("--watch-spot")
    if request.max_duration:
        argv += ["--max-duration", f"{request.max_duration}s"]
    if request.keep_last_n:
        argv += ["--keep-last-n", str(request.keep_last_n)]
    if request.python:
        argv += ["--python", request.python]
    if request.setup:
        argv += ["--setup", request.setup]
    argv += ["--deps", request.deps, "--setup-timeout", f"{setup_timeout}s"]
    if request.recovery is not None and request.recovery.hang_timeout is not None:
        argv += ["--hang-timeout", f"{request.recovery.hang_timeout}s"]
        argv += ["--hang-gpu-util", f"{request.recovery.hang_gpu_util:g}"]
    return [*argv, "--", request.script, *request.args]


def _dead_man(request: RemoteTrain) -> str:
    """What the agent does with its machine when the job ends: nothing with ``--keep``; stop it
    when the job may be stopped and resumed (``--on-interrupt stop``: the OS shutdown of a stop
    must not become a terminate); else terminate it."""
    if request.keep_machine:
        return "none"
    return "stop" if request.on_interrupt == "stop" else "terminate"


def start_command(
    job: Job,
    request: RemoteTrain,
    storage_url: str,
    *,
    attempt: int,
    detach: bool = True,
    agent_env: dict[str, str] | None = None,
    setup_timeout: float = 3600.0,
) -> tuple[list[str], dict[str, str]]:
    """argv and env that get the agent onto the machine and run it: detached for a command
    sent to a running machine, in the foreground as a container's own command. ``agent_env``
    says where the agent comes from (:func:`runctl.workflows.agent_shipping.publish`)."""
    env = {
        "RUNCTL_AGENT_HOME": f"runctl/{job.id}/attempt-{attempt}",  # relative to $HOME
        agent_shipping.DETACH_ENV: "1" if detach else "0",
        **(agent_env or {agent_shipping.SOURCE_ENV: "preinstalled"}),
        **request.env,
    }
    argv = agent_argv(
        job,
        request,
        storage_url,
        attempt=attempt,
        on_exit=None if detach else "none",
        setup_timeout=setup_timeout,
    )
    return ["sh", "-c", agent_shipping.start_script(), "runctl-start", *argv], env


class RemoteTrainer:
    """Drives one remote job through its attempts (see the module docstring)."""

    def __init__(
        self,
        provider: ComputeProvider,
        ledger: Ledger,
        config: Config,
        *,
        echo: BinaryIO | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.provider = provider
        self.ledger = ledger
        self.config = config
        self.lifecycle = Lifecycle(ledger, {provider.name: provider})
        self._lost_states = provider.lost_states | GONE_RESOURCE_STATES | {"gone"}
        self.echo = echo
        self.say = say or (lambda text: None)
        self._interrupted: int | None = None
        self._watch: JobBudgetWatch | None = None
        self._stop_asked: float | None = None  # monotonic time the budget stop was requested
        self._limit: tuple[str, int, str] | None = None  # the overall cap reached: (state, code, why)
        self._next_refresh = 0.0
        self._start_watch: AgentStartWatch | None = None  # the current attempt's start deadline
        self._last_chunk: str | None = None  # the last log chunk echoed, over all attempts
        self._timings_seen: set[tuple[int, str]] = set()  # start-up timings already recorded
        self._notices: JobNotices | None = None  # the job followed now

    # -- start ---------------------------------------------------------------------------------

    def submit(self, request: RemoteTrain) -> Job:
        """Record the job, upload the code, get a machine, start the agent. Returns the job."""
        name = validate_name(request.name or Path(request.script).stem)
        storage_root = remote_storage_root(self.config)
        if request.machine is None and request.spec is None:
            raise ValidationError("give a machine to use or a machine spec to create")
        existing = None if request.machine is None else self._resource_for(request.machine)
        self._check_on_interrupt(request, existing)
        self._check_credentials(request)
        if request.recovery is None:  # stored resolved: a reattach keeps the rules it started with
            request.recovery = self.config.recovery.model_copy()
        prepared = None
        if request.spec is not None and existing is None:
            prepared = self._prepare(request.spec, request)  # precheck, priced plan, verdict
        job = self.ledger.create_job(
            name=name,
            provider=self.provider.name,
            script=request.script,
            args=request.args,
            workdir=str(request.project_dir.resolve()),
        )
        storage_url = f"{storage_root}/jobs/{job.id}"
        self.ledger.update_job(job.id, storage_url=storage_url, request=request.to_dict())
        crash_point("workflow.job_recorded")
        storage = job_storage(self.config, job.id)
        try:
            job_env.upload(storage, request.variables, request.secret_names)
            if urls := request.notify_urls(self.config):  # for the agent's own notices
                storage.write_json(NOTIFY_KEY, {"urls": urls})
            if request.sync_code:
                with tempfile.TemporaryDirectory() as tmp:
                    bundle = build_bundle(
                        request.project_dir, Path(tmp) / CODE_KEY, must_contain=request.script
                    )
                    storage.put_file(CODE_KEY, bundle)
                crash_point("workflow.code_uploaded")
            if self.config.remote.agent_source == "ship":  # built (or found cached) before any bill
                agent_shipping.wheelhouse(self.config.remote)
            machine = Machine.of(existing) if existing is not None else self._create(request, job, prepared)
            crash_point("workflow.machine_created")
            self._start(machine, job, request, storage_url, attempt=1)
            crash_point("workflow.agent_started")
        except CapacityError as exc:
            job_env.delete(storage)
            self.ledger.finish_job(job.id, "no_capacity", detail=str(exc), exit_code=int(exc.exit_code))
            raise
        except KeyboardInterrupt:  # e.g. while waiting for capacity: no job stays pending
            self._cleanup(job.id)
            self.ledger.finish_job(
                job.id, "cancelled", detail="Ctrl-C before the job started", exit_code=int(ExitCode.SIGINT)
            )
            raise
        except PRECHECK_ERRORS as exc:
            job_env.delete(storage)
            self.ledger.finish_job(job.id, "failed_precheck", detail=str(exc), exit_code=int(exc.exit_code))
            raise
        except RunctlError as exc:
            job_env.delete(storage)
            self._cleanup(job.id)
            self.ledger.finish_job(job.id, "failed_setup", detail=str(exc), exit_code=int(exc.exit_code))
            raise
        self.ledger.update_job(job.id, state="running", started_at=time.time())
        return self.ledger.get_job(job.id)

    def _check_on_interrupt(self, request: RemoteTrain, existing: Resource | None) -> None:
        """``--on-interrupt stop`` only where the machine can be stopped and started again."""
        if request.on_interrupt != "stop":
            return
        spec = (
            request.spec
            if existing is None
            else replace(request.spec or MachineSpec(), spot=existing.spec.get("market") == "spot")
        )
        refusal = self.provider.stop_refusal(spec or MachineSpec())
        if refusal is not None:
            raise UnsupportedError(
                f"--on-interrupt stop: {refusal}",
                hint="use --on-interrupt terminate (checkpoints are kept in storage) or detach",
            )

    def _machine_credentials(self, job: Job, request: RemoteTrain) -> dict[str, str]:
        """What a machine without an instance role gets to reach the job's storage (see
        :mod:`runctl.storage.credentials`: short-lived and scoped to the job where it can be)."""
        from runctl.storage.credentials import machine_credentials

        return machine_credentials(
            self.config.storage,
            job_id=job.id,
            storage_root=remote_storage_root(self.config),
            max_duration_s=request.max_duration,
            long_lived_allowed=self.config.runpod.long_lived_credentials,
            region=self.config.aws.region,
        )

    def _check_credentials(self, request: RemoteTrain) -> None:
        """A machine without an instance role must not outlive its scoped credentials: refused
        (ConfigError) before anything is created, unless the user allowed long-lived keys."""
        if not self.provider.command_at_creation or self.config.storage.endpoint_url:
            return
        from runctl.storage.credentials import credentials_lifetime

        credentials_lifetime(
            request.max_duration, long_lived_allowed=self.config.runpod.long_lived_credentials
        )

    def _prepare(self, spec: MachineSpec, request: RemoteTrain) -> launch.Launch:
        """The launch path's checks for one machine of this job (:mod:`runctl.workflows.launch`)."""
        return launch.prepare(
            self.provider,
            spec,
            self.ledger,
            self.config,
            max_duration_s=request.max_duration,
            over_budget=request.over_budget,
            say=self.say,
        )

    def _create(self, request: RemoteTrain, job: Job, prepared: launch.Launch | None) -> Machine:
        """A new machine for attempt 1 (a container's command goes into its spec)."""
        if prepared is None:
            raise ValidationError("no machine spec to create the job's machine from")
        if self.provider.command_at_creation:
            spec = self._with_command(prepared.plan.spec, self.ledger.get_job(job.id), request, attempt=1)
            prepared = replace(prepared, plan=self.provider.plan(spec))
        machine = self._place(prepared, job.id, request)
        self.say(f"machine {machine.cloud_id} ({machine.zone or ''}) for job {job.id}")
        return machine

    def _place(self, prepared: launch.Launch, job_id: str, request: RemoteTrain) -> Machine:
        """Create the job's machine; refused for capacity, wait ``capacity_wait`` (the job stays
        ``pending`` or between attempts) trying again with backoff (:mod:`runctl.core.recovery`)."""
        policy = request.recovery or self.config.recovery
        wait = policy.capacity_wait
        if wait is not None and policy.max_total_duration is not None:  # the job's cap bounds it
            left = policy.max_total_duration - (time.time() - self.ledger.get_job(job_id).created_at)
            wait = max(1.0, min(wait, left))
        if wait is None:
            return launch.apply(prepared, job_id=job_id)[0]
        tries = 0

        def place() -> Machine:
            nonlocal tries
            tries += 1
            try:
                return launch.apply(prepared, job_id=job_id)[0]
            except CapacityError as exc:
                reason = f"try {tries}: {exc}; waiting for capacity (capacity_wait {duration(wait)})"
                self.ledger.add_event(
                    "recovery.capacity_wait", reason[:500], job_id=job_id, data={"try": tries}
                )
                self.say(f"job {job_id}: no capacity yet (try {tries}); trying again with backoff")
                raise CapacityError(str(exc), provider=exc.provider, retryable=True, hint=exc.hint) from exc

        try:
            return capacity_retry(wait).call(place)
        except RetryExhaustedError as exc:
            if not isinstance(exc.last_error, CapacityError):
                raise
            raise CapacityError(
                f"no capacity within capacity_wait ({duration(wait)}, {tries} tries): {exc.last_error}",
                provider=exc.last_error.provider,
                hint="a longer --capacity-wait, another instance type, zone or region",
            ) from exc

    def _resource_for(self, ref: str) -> Resource:
        if self.provider.command_at_creation:
            raise ValidationError(
                f"{self.provider.name} machines take their command when they are created",
                hint="use 'new' to create a machine for this job",
            )
        for resource in self.ledger.list_resources(provider=self.provider.name, include_gone=False):
            if ref in (resource.id, resource.cloud_id) and resource.kind in self.provider.machine_kinds:
                return resource
        raise ValidationError(
            f"{ref} is not a live {self.provider.name} machine in runctl's ledger",
            hint=f"create one with 'runctl {self.provider.name} create', or omit it to create one",
        )

    def _with_command(
        self, spec: MachineSpec | None, job: Job, request: RemoteTrain, *, attempt: int
    ) -> MachineSpec:
        """``spec`` carrying the agent as the machine's own command (``command_at_creation``)."""
        if spec is None:
            raise ValidationError("no machine spec to create the job's machine from")
        argv, env = start_command(
            job, request, job.storage_url or "", attempt=attempt, detach=False,
            agent_env=self._agent_env(job, attempt), setup_timeout=self.config.remote.setup_timeout,
        )
        env.update(self._machine_credentials(job, request))
        env.update(agent_storage_env(self.config.storage))
        return replace(spec, extra={**spec.extra, "command": argv, "env": env})

    def _agent_env(self, job: Job, attempt: int) -> dict[str, str]:
        """Where this attempt's agent comes from (``[remote] agent_source``)."""
        remote = self.config.remote
        env = {agent_shipping.SOURCE_ENV: remote.agent_source}
        if remote.python_mirror:
            env[agent_shipping.MIRROR_ENV] = remote.python_mirror
        if remote.agent_source == "ship":
            root = open_storage(remote_storage_root(self.config), self.config.storage)
            env.update(
                agent_shipping.publish(
                    agent_shipping.wheelhouse(remote),
                    root,
                    job_storage(self.config, job.id),
                    attempt=attempt,
                    expires=agent_shipping.url_lifetime(remote),
                )
            )
        return env

    def _start(
        self, machine: Machine, job: Job, request: RemoteTrain, storage_url: str, *, attempt: int
    ) -> None:
        if self.provider.command_at_creation:
            handle = machine.cloud_id  # the machine runs the agent as its own command
        else:
            argv, env = start_command(
                job,
                request,
                storage_url,
                attempt=attempt,
                agent_env=self._agent_env(job, attempt),
                setup_timeout=self.config.remote.setup_timeout,
            )
            env.update(agent_storage_env(self.config.storage))
            handle = self.provider.start(machine, argv, env)
        self.ledger.add_event(
            "job.attempt",
            f"attempt {attempt} started on {machine.cloud_id}",
            job_id=job.id,
            resource_id=machine.resource_id,
            data={"attempt": attempt, "handle": handle},
        )

    # -- wait ----------------------------------------------------------------------------------

    def wait(self, job_id: str, request: RemoteTrain) -> RemoteResult:
        """Follow the job to its end, resuming and restarting as allowed; returns the outcome."""
        job = self.ledger.get_job(job_id)
        storage = job_storage(self.config, job.id)
        self._interrupted = self._stop_asked = self._limit = None  # a trainer may follow a job again
        policy = request.recovery or self.config.recovery
        recovery = Recovery.from_events(policy, self.ledger.events(job_id=job.id, limit=100_000))
        spec = request.spec
        self._watch = JobBudgetWatch(self.ledger, job.id, self.config.cost)
        self._notices = JobNotices(self.ledger, job.id, request.notify_urls(self.config))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                state, status = self._follow_attempt(job, storage, request)
                if state is None:  # interrupted on the controller
                    return self._interrupt(job, request)
                if self._limit is not None and state != "succeeded":
                    limit_state, limit_code, reason = self._limit
                    if state != "cancelled" or limit_state != "cancelled":  # else the agent's own words
                        said = status.get("detail") or state
                        detail = said if str(said).startswith("stopped: ") else f"stopped: {reason}; {said}"
                        state, status = limit_state, {**status, "detail": detail, "exit_code": limit_code}
                decision = recovery.after(
                    state,
                    status.get("exit_code"),
                    auto_resume=request.auto_resume and spec is not None,
                    spot=spec is not None and spec.spot,
                    elapsed=time.time() - job.created_at,
                )
                if decision.action != "end" or state in ("preempted", "failed", "hung"):
                    self.ledger.add_event(
                        decision.event_kind,
                        f"attempt {job.attempt} {state}: {decision.reason}",
                        job_id=job.id,
                        data=decision.event_data(job.attempt),
                    )
                if decision.action == "end":
                    return self._finish(job, request, state, status)
                if decision.on_demand and spec is not None:
                    self.say(f"job {job.id}: {decision.reason}")
                    spec = replace(spec, spot=False)
                machine = None if decision.action == "resume" else self._current_machine(job.id)
                job = self._next_attempt(job, request, spec, decision=decision, machine=machine)
        except BudgetError as exc:  # a replacement machine was refused
            status = {"detail": f"not resumed: {exc}", "exit_code": int(exc.exit_code)}
            return self._finish(self.ledger.get_job(job.id), request, "cancelled", status)
        except Exception as exc:  # nothing may leave the job running or its machine billing
            job_env.delete(storage)
            return RemoteResult(*end_on_error(self.ledger, self.provider, job.id, exc, say=self.say))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._notices.relay()  # the end, a failed release

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._interrupted = signum

    def _follow_attempt(
        self, job: Job, storage: Storage, request: RemoteTrain
    ) -> tuple[str | None, dict[str, Any]]:
        last_heartbeat = 0.0
        self._start_watch = start_watch = AgentStartWatch(self.config.remote.agent_start_timeout)
        while True:
            if self._interrupted is not None:
                return None, {}
            status = self._read_status(storage)
            if self.echo is not None:
                data, self._last_chunk = self._read_new_log(storage, self._last_chunk)
                if data:
                    self.echo.write(data)
                    self.echo.flush()
            attempt_status = status if status.get("attempt") == job.attempt else {}
            last_heartbeat = self._record_heartbeat(job, attempt_status, last_heartbeat)
            record_timings(self.ledger, job, attempt_status, self._timings_seen)
            if attempt_status.get("state") in AGENT_STATES_FINAL:
                return str(attempt_status["state"]), attempt_status
            machine_state = self._machine_state(job.id)
            if machine_state is None or machine_state in self._lost_states:
                # one more look: the agent may have written its final status just before
                status = self._read_status(storage)
                if status.get("attempt") == job.attempt and status.get("state") in AGENT_STATES_FINAL:
                    return str(status["state"]), status
                detail = f"machine {machine_state or 'gone'} while the job was running"
                self.ledger.add_event("job.machine_gone", detail, job_id=job.id)
                return "preempted", {"detail": detail}
            if start_watch.overdue(machine_state, attempt_status):
                timeout = start_watch.timeout
                return "failed_setup", fail_agent_start(
                    self.ledger, self.provider, job, timeout, say=self.say
                )
            self._watch_cost(job, storage, request)
            if self._notices is not None:
                self._notices.relay()
            time.sleep(request.poll_interval)

    def _watch_cost(self, job: Job, storage: Storage, request: RemoteTrain) -> None:
        """Refresh the machine's rate now and then; stop the job at its ``max_cost_usd`` or its
        ``max_total_duration``."""
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.cost.rate_refresh_interval
            machine = self._current_machine(job.id)
            try:
                rate = None if machine is None else self.provider.refresh_rate(machine)
            except RunctlError as exc:
                rate = None
                self.ledger.add_event(
                    "resource.rate_error", f"rate refresh failed: {exc}"[:300], job_id=job.id
                )
            if rate is not None and machine is not None:
                self.say(f"{machine.cloud_id} now costs ${rate:g}/h")
        if self._watch is None:
            return
        if self._stop_asked is None:
            self._limit = self._limit_reached(job, request)
            if self._limit is not None:
                reason = self._limit[2]
                request_stop(storage, attempt=job.attempt, reason=reason)
                self._stop_asked = now
                self.say(f"job {job.id}: {reason}: asking the agent to stop it (checkpoint first)")
        elif now - self._stop_asked > request.grace_period + 3 * request.heartbeat + STOP_SLACK_S:
            self._stop_asked = math.inf  # once
            machine = self._current_machine(job.id)
            if machine is not None:
                self.say(f"the agent did not stop job {job.id}: releasing {machine.cloud_id}")
                self._release_quietly(machine)

    def _limit_reached(self, job: Job, request: RemoteTrain) -> tuple[str, int, str] | None:
        """(outcome, exit code, reason) of the overall cap the job has reached, if one."""
        reason = self._watch.check() if self._watch is not None else None
        if reason is not None:
            return "cancelled", int(ExitCode.BUDGET), reason
        cap = (request.recovery or self.config.recovery).max_total_duration
        if cap is not None and time.time() - job.created_at >= cap:
            reason = f"max_total_duration ({duration(cap)}) reached"
            self.ledger.add_event(
                "recovery.time_limit", f"job {job.id}: {reason}: stopping it", job_id=job.id
            )
            return TIME_LIMIT, int(ExitCode.TIMEOUT), reason
        return None

    def _record_heartbeat(self, job: Job, status: dict[str, Any], last: float) -> float:
        """Keep the agent's utilisation in the ledger (``runctl top`` draws it), every 30 s."""
        updated = float(status.get("updated_at") or 0.0)
        if updated - last < HEARTBEAT_EVENT_INTERVAL_S or "utilisation" not in status:
            return last
        self.ledger.add_event(
            "agent.heartbeat",
            f"agent {status.get('state')}",
            job_id=job.id,
            data={"attempt": job.attempt, **status["utilisation"]},
        )
        return updated

    @staticmethod
    def _read_status(storage: Storage) -> dict[str, Any]:
        try:
            return storage.read_json(STATUS_KEY) or {}
        except RunctlError:
            return {}

    @staticmethod
    def _read_new_log(storage: Storage, after: str | None) -> tuple[bytes, str | None]:
        try:
            return read_log(storage, after=after)
        except RunctlError:
            return b"", after

    def _current_machine(self, job_id: str) -> Resource | None:
        live = [
            r
            for r in self.ledger.list_resources(job_id=job_id, include_gone=False)
            if r.kind in self.provider.machine_kinds
        ]
        return live[-1] if live else None

    def _machine_state(self, job_id: str) -> str | None:
        machine = self._current_machine(job_id)
        if machine is None:
            return None
        try:
            return self.provider.lookup(machine)
        except (RetryExhaustedError, CapacityError):
            return machine.state  # the API is struggling: assume unchanged, look again later

    def _next_attempt(
        self,
        job: Job,
        request: RemoteTrain,
        spec: MachineSpec | None,
        *,
        decision: Decision,
        machine: Resource | None = None,
    ) -> Job:
        attempt = job.attempt + 1
        self.say(f"job {job.id}: {decision.reason}; starting attempt {attempt} from the latest checkpoint")
        self.ledger.update_job(job.id, attempt=attempt)
        job = self.ledger.get_job(job.id)
        target: Machine | None = None
        # the agent's dead-man switch ends its machine with the attempt unless --keep
        reusable = machine is not None and request.keep_machine and not self.provider.command_at_creation
        if reusable and machine is not None and self.provider.lookup(machine) == "running":
            target = Machine(
                resource_id=machine.id, cloud_id=machine.cloud_id or "", state="running", zone=machine.zone
            )
        else:
            for old in self.ledger.list_resources(job_id=job.id, include_gone=False):
                if old.kind in self.provider.machine_kinds and not old.persistent:
                    self._release_quietly(old)
            if spec is None:
                raise ValidationError("the job's machine is gone and no spec was given to replace it")
            if self.provider.command_at_creation:
                spec = self._with_command(spec, job, request, attempt=attempt)
            target = self._place(self._prepare(spec, request), job.id, request)
        self._start(target, job, request, job.storage_url or "", attempt=attempt)
        return job

    # -- end -----------------------------------------------------------------------------------

    def _finish(self, job: Job, request: RemoteTrain, state: str, status: dict[str, Any]) -> RemoteResult:
        exit_code = status.get("exit_code")
        if exit_code is None:
            exit_code = 0 if state == "succeeded" else int(ExitCode.FAILURE)
        last = status.get("last_checkpoint") or {}
        if request.outputs_to is not None:
            self._download_outputs(job, request.outputs_to)
        self.ledger.finish_job(
            job.id,
            state,
            exit_code=int(exit_code),
            detail=status.get("detail"),
            last_checkpoint=last.get("name"),
        )
        if request.release_at_end or not request.keep_machine:
            self._cleanup(job.id)
        job_env.delete(job_storage(self.config, job.id))
        return RemoteResult(self.ledger.get_job(job.id), int(exit_code))

    def _download_outputs(self, job: Job, destination: Path) -> None:
        storage = job_storage(self.config, job.id)
        pairs = [(o, destination / o.key.removeprefix("outputs/")) for o in storage.list("outputs/")]
        if pairs:
            storage.download_files(pairs)
            self.say(f"outputs of {job.id} downloaded to {destination}")

    def _interrupt(self, job: Job, request: RemoteTrain) -> RemoteResult:
        signum = self._interrupted or signal.SIGINT
        if request.on_interrupt == "detach" and not self._agent_started(job):
            return RemoteResult(
                release_before_detach(self.ledger, self.provider, job, signum, say=self.say), 128 + signum
            )
        if request.on_interrupt == "detach":
            self.say(
                f"detached; job {job.id} keeps running. Reattach: runctl jobs wait {job.id}; "
                f"logs: runctl logs {job.id} --follow"
            )
            return RemoteResult(job, 128 + signum)
        machine = self._current_machine(job.id)
        if request.on_interrupt == "stop" and machine is not None:
            try:
                self.provider.stop(machine)  # the OS shutdown gives the script its SIGTERM
            except RunctlError as exc:
                self.say(f"could not stop {machine.cloud_id}: {exc}; job {job.id} keeps running")
                return RemoteResult(job, 128 + signum)
            self.ledger.update_job(
                job.id, state=STOPPED, detail=f"Ctrl-C on the controller: {machine.cloud_id} stopped"
            )
            self.ledger.add_event("job.stopped", f"machine {machine.cloud_id} stopped", job_id=job.id)
            self.say(f"stopped {machine.cloud_id}; continue with: runctl jobs resume {job.id}")
            return RemoteResult(self.ledger.get_job(job.id), 128 + signum)
        if machine is not None:
            self._release_quietly(machine)
        self.ledger.finish_job(
            job.id,
            "cancelled",
            exit_code=128 + signum,
            detail=f"Ctrl-C on the controller: machine {request.on_interrupt}d",
        )
        return RemoteResult(self.ledger.get_job(job.id), 128 + signum)

    # -- resume a stopped job --------------------------------------------------------------------

    def resume(self, job_id: str) -> Job:
        """Start a ``stopped`` job's machine again and send the agent as attempt + 1; the agent
        resumes from the latest complete checkpoint in storage. Returns the running job."""
        job = self.ledger.get_job(job_id)
        if job.state != STOPPED:
            raise ValidationError(
                f"job {job.id} is {job.state}, not stopped",
                hint=f"only a job stopped with --on-interrupt stop resumes; follow it: "
                f"runctl jobs wait {job.id}",
            )
        machine = self._current_machine(job.id)
        if machine is None:
            raise ValidationError(
                f"job {job.id} has no stopped machine left",
                hint=f"'runctl jobs show {job.id}' lists its resources",
            )
        request = stored_request(job)
        self.say(f"starting {machine.cloud_id} again for job {job.id}")
        machine = self.provider.restart(machine)
        attempt = job.attempt + 1
        self.ledger.update_job(job.id, attempt=attempt, state="running", detail=None)
        self.ledger.add_event("job.resumed", f"attempt {attempt} on {machine.cloud_id}", job_id=job.id)
        job = self.ledger.get_job(job.id)
        try:
            self._start(Machine.of(machine), job, request, job.storage_url or "", attempt=attempt)
        except RunctlError as exc:
            self.ledger.update_job(job.id, state=STOPPED, detail=f"resume failed: {exc}")
            raise
        return job

    def _agent_started(self, job: Job) -> bool:
        """Whether the current attempt's agent has written a heartbeat (seen, or there now)."""
        if self._start_watch is not None and self._start_watch.started:
            return True
        return self._read_status(job_storage(self.config, job.id)).get("attempt") == job.attempt

    def _release_quietly(self, machine: Resource) -> None:
        try:
            self.lifecycle.release(machine)
        except RunctlError as exc:
            self.say(f"could not release {machine.cloud_id}: {exc} (still recorded as live)")

    def _cleanup(self, job_id: str) -> None:
        try:
            self.lifecycle.cleanup_on_failure(job_id)
        except RunctlError as exc:
            self.say(str(exc))


def stored_request(job: Job) -> RemoteTrain:
    """The request a remote job was submitted with (older jobs without one: script and args)."""
    if job.request:
        return RemoteTrain.from_dict(job.request)
    return RemoteTrain(script=job.script, args=job.args)
