"""``runctl aws train``, ``runctl runpod train``, ``runctl workflow train``, ``runctl jobs wait``
and ``runctl jobs resume``: remote training.

The work is in :mod:`runctl.workflows.remote`; these commands parse, pick the provider and
render. ``aws train INSTANCE`` uses a machine runctl created (``new`` creates one);
``workflow train`` always creates one and releases it at the end (create → sync → train →
wait → download outputs → terminate).

The options every train command shares are declared once (:data:`JOB_OPTIONS`) and added to each
command's signature by :func:`job_options`, which turns them into one
:class:`~runctl.workflows.remote.RemoteTrain`: a command declares only its machine options.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.observe import MetricsPortOpt, metrics_server
from runctl.cli.options import BID, OutputOpt, OverBudgetOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.core.config import RecoveryConfig
    from runctl.providers.base import ComputeProvider, LaunchOptions
    from runctl.workflows.remote import RemoteTrain, RemoteTrainer

workflow_app = typer.Typer(
    help="Multi-step workflows (create → train → collect → release).", no_args_is_help=True
)

ScriptArg = Annotated[str, typer.Argument(help="The script, relative to the project directory.")]
ArgsArg = Annotated[list[str] | None, typer.Argument(help="Arguments for the script (after --).")]
ResumeOpt = Annotated[
    bool, typer.Option(help="On preemption, continue on a new machine from the latest checkpoint.")
]
PollOpt = Annotated[str, typer.Option(help="How often the controller looks at the job.", hidden=True)]
TypeOpt = Annotated[str | None, typer.Option(help="Instance type for a new machine.")]
SpotOpt = Annotated[
    bool | None, typer.Option("--spot/--on-demand", help="Market for a new machine.", show_default=False)
]
GpuOpt = Annotated[list[str] | None, typer.Option(help="RunPod GPU type; repeat to allow fallbacks.")]
AmiOpt = Annotated[
    str | None, typer.Option("--ami", help="EC2 image id (default: newest DLAMI for GPU types, else AL2023).")
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--iam-instance-profile", help="EC2 instance profile name or ARN for the machine."),
]

#: The options every train command shares: name → (annotation, default). A command may change a
#: default (``job_options(on_interrupt="terminate")``) or leave an option out (``omit``).
JOB_OPTIONS: dict[str, tuple[Any, Any]] = {
    "name": (Annotated[str | None, typer.Option(help="Job name (default: the script's name).")], None),
    "project_dir": (
        Annotated[Path, typer.Option(help="The project directory bundled as the code.")],
        Path("."),
    ),
    "sync_code": (
        Annotated[bool, typer.Option(help="Upload the project (gitignore-aware) to the job's storage.")],
        True,
    ),
    "wait": (Annotated[bool, typer.Option(help="Follow the job (logs, outcome) until it ends.")], False),
    "auto_resume": (ResumeOpt, False),
    "max_restarts": (
        Annotated[
            int | None,
            typer.Option(
                min=0, help="Re-runs allowed after a code failure (default: [recovery] max_restarts)."
            ),
        ],
        None,
    ),
    "max_preemptions": (
        Annotated[
            int | None,
            typer.Option(
                min=0,
                help="Spot preemptions before on-demand (default: [recovery] max_preemptions).",
            ),
        ],
        None,
    ),
    "restart_on_exit_code": (
        Annotated[
            list[int] | None,
            typer.Option(
                min=1, max=255, help="An exit code that restarts without using up --max-restarts; repeatable."
            ),
        ],
        None,
    ),
    "capacity_wait": (
        Annotated[
            str | None,
            typer.Option(help="Wait this long (pending, with backoff) for capacity before no_capacity."),
        ],
        None,
    ),
    "hang_timeout": (
        Annotated[
            str | None,
            typer.Option(help="The agent stops a script with no progress for this long as hung (e.g. 30m)."),
        ],
        None,
    ),
    "max_total_duration": (
        Annotated[
            str | None,
            typer.Option(help="Stop the job gracefully after this long over all attempts (e.g. 24h)."),
        ],
        None,
    ),
    "on_interrupt": (
        Annotated[str, typer.Option(help="What Ctrl-C does: detach, stop or terminate.")],
        "detach",
    ),
    "grace_period": (Annotated[str, typer.Option(help="Time the script gets to save after SIGTERM.")], "30s"),
    "max_duration": (
        Annotated[str | None, typer.Option(help="Stop the job after this long (e.g. 12h).")],
        None,
    ),
    "keep_last_n": (Annotated[int | None, typer.Option(min=1, help="Checkpoints kept in storage.")], None),
    "keep": (Annotated[bool, typer.Option(help="Keep the machine running after the job ends.")], False),
    "output_dir": (
        Annotated[Path | None, typer.Option(help="Download the job's outputs here at the end.")],
        None,
    ),
    "data_s3": (Annotated[str | None, typer.Option(help="Input data URI, passed as RUNCTL_DATA_URI.")], None),
    "setup": (
        Annotated[
            str | None,
            typer.Option(help="Shell command run once per machine before the script (e.g. pip install ...)."),
        ],
        None,
    ),
    "python": (
        Annotated[
            str | None, typer.Option(help="Interpreter on the machine for a .py script (a prepared env).")
        ],
        None,
    ),
    "deps": (
        Annotated[
            str,
            typer.Option(
                help="auto: without --python/--setup, install the project's requirements.txt or "
                "pyproject.toml (uv run for a PEP 723 script) on the machine; none: nothing."
            ),
        ],
        "auto",
    ),
    "env": (
        Annotated[list[str] | None, typer.Option(help="NAME=VALUE for the script's environment; repeat.")],
        None,
    ),
    "env_file": (
        Annotated[Path | None, typer.Option(help="A file of NAME=VALUE lines for the script's environment.")],
        None,
    ),
    "secret": (
        Annotated[
            list[str] | None,
            typer.Option(
                help="NAME (from this environment) or NAME=FILE: a secret for the script; repeat. "
                "Sent through the job's storage only, never shown."
            ),
        ],
        None,
    ),
    "notify": (
        Annotated[
            list[str] | None,
            typer.Option(help="Also send this job's notices to this apprise URL; repeatable (not stored)."),
        ],
        None,
    ),
    "poll_interval": (PollOpt, "5s"),
    "over_budget": (OverBudgetOpt, False),
}


def _request(script: str, args: list[str] | None, values: dict[str, Any]) -> RemoteTrain:
    """The RemoteTrain the shared options describe."""
    from runctl.workflows import job_env
    from runctl.workflows.remote import RemoteTrain

    data = values.pop("data_s3")
    variables, secret_names = job_env.collect(
        values.pop("env") or [], values.pop("env_file"), values.pop("secret") or []
    )
    return RemoteTrain(
        script=script,
        args=list(args or []),
        name=values.pop("name"),
        project_dir=values.pop("project_dir"),
        sync_code=values.pop("sync_code"),
        wait=values.pop("wait"),
        auto_resume=values.pop("auto_resume"),
        recovery=_recovery(values),
        on_interrupt=values.pop("on_interrupt"),
        grace_period=duration_arg("--grace-period", values.pop("grace_period")) or 30.0,
        max_duration=duration_arg("--max-duration", values.pop("max_duration")),
        keep_last_n=values.pop("keep_last_n"),
        keep_machine=values.pop("keep"),
        outputs_to=values.pop("output_dir"),
        env={"RUNCTL_DATA_URI": data} if data else {},
        poll_interval=duration_arg("--poll-interval", values.pop("poll_interval")) or 5.0,
        over_budget=values.pop("over_budget"),
        setup=values.pop("setup"),
        python=values.pop("python"),
        deps=values.pop("deps"),
        variables=variables,
        secret_names=secret_names,
        notify=list(values.pop("notify") or []),
    )


def _recovery(values: dict[str, Any]) -> RecoveryConfig:
    """The config's ``[recovery]`` with the options given on the command line over it."""
    given = {
        "max_restarts": values.pop("max_restarts"),
        "max_preemptions": values.pop("max_preemptions"),
        "restart_on_exit_codes": values.pop("restart_on_exit_code") or None,
        "capacity_wait": duration_arg("--capacity-wait", values.pop("capacity_wait")),
        "max_total_duration": duration_arg("--max-total-duration", values.pop("max_total_duration")),
        "hang_timeout": duration_arg("--hang-timeout", values.pop("hang_timeout")),
    }
    base = STATE.loaded().config.recovery
    return base.model_validate({**base.model_dump(), **{k: v for k, v in given.items() if v is not None}})


def job_options(
    *, omit: tuple[str, ...] = (), **defaults: Any
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Give a train command the shared job options; it receives them as ``request``.

    The command's own parameters (script, args, its machine options, output) stay as declared;
    the shared ones are appended to its signature, which is what typer reads.
    """

    def decorate(command: Callable[..., int]) -> Callable[..., int]:
        own = inspect.signature(command)
        params = [  # evaluated here: typer needs the objects, and ``request``'s type stays lazy
            p.replace(annotation=eval(p.annotation, command.__globals__))
            if isinstance(p.annotation, str)
            else p
            for p in own.parameters.values()
            if p.name != "request"
        ]
        shared = {name: spec for name, spec in JOB_OPTIONS.items() if name not in omit}
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=defaults.get(name, default)
            )
            for name, (kind, default) in shared.items()
        ]
        fixed = {
            name: defaults.get(name, default) for name, (_, default) in JOB_OPTIONS.items() if name in omit
        }

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> int:
            values = {**fixed, **{name: kwargs.pop(name) for name in shared}}
            return command(request=_request(kwargs["script"], kwargs.get("args"), values), **kwargs)

        # a function takes any attribute, but mypy knows no __signature__ on Callable: typer reads it
        wrapper.__signature__ = own.replace(parameters=[*params, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *added]}
        return wrapper

    return decorate


def _run(
    provider: ComputeProvider, request: RemoteTrain, output: OutputFormat, metrics_port: int | None
) -> int:
    quiet = output is OutputFormat.json
    trainer = _trainer(provider, quiet=quiet)
    job = trainer.submit(request)
    render.info(f"job {job.id} ({job.name}) started; storage {job.storage_url}")
    exit_code = 0
    if request.wait:
        with metrics_server(metrics_port, STATE.loaded().config, STATE.ledger()):
            result = trainer.wait(job.id, request)
        job, exit_code = result.job, result.exit_code
        render.info(f"job {job.id} {job.state}" + (f": {job.detail}" if job.detail else ""))
    else:
        render.info(f"follow it with: runctl jobs wait {job.id}   (logs: runctl logs {job.id} -f)")
    if quiet:
        render.print_json({"job": job.to_dict(), "exit_code": exit_code})
    return exit_code


def _trainer(provider: ComputeProvider, *, quiet: bool) -> RemoteTrainer:
    from runctl.workflows.remote import RemoteTrainer

    return RemoteTrainer(
        provider,
        STATE.ledger(),
        STATE.loaded().config,
        echo=None if quiet else sys.stdout.buffer,
        say=render.info,
    )


def _provider(name: str) -> ComputeProvider:
    from runctl.providers import registry

    return registry.compute(name, STATE.ledger(), STATE.loaded().config, progress=render.info)


def _launch(provider: ComputeProvider, request: RemoteTrain, options: LaunchOptions) -> RemoteTrain:
    request.spec = provider.spec(options)
    return request


@job_options()
def aws_train(
    instance: Annotated[
        str, typer.Argument(help="Instance id or ledger id of a runctl machine, or 'new' to create one.")
    ],
    script: ScriptArg,
    args: ArgsArg = None,
    instance_type: TypeOpt = None,
    spot: SpotOpt = None,
    ami: AmiOpt = None,
    iam_instance_profile: ProfileOpt = None,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
    *,
    request: RemoteTrain,
) -> int:
    """Train SCRIPT on an EC2 machine: the agent runs it, syncing to storage; --wait follows it."""
    from runctl.providers.base import LaunchOptions

    provider = _provider("aws")
    if instance == "new":
        options = LaunchOptions(
            instance_type=instance_type, spot=spot, image=ami, iam_instance_profile=iam_instance_profile
        )
        _launch(provider, request, options)
    elif ami or iam_instance_profile or instance_type:
        from runctl.core.errors import UsageError

        raise UsageError(
            "--instance-type, --ami and --iam-instance-profile apply to a new machine",
            hint=f"give 'new' instead of {instance} to create one, or drop them",
        )
    else:
        request.machine = instance
    return _run(provider, request, output, metrics_port)


@job_options(omit=("keep",))
def runpod_train(
    pod: Annotated[str, typer.Argument(help="'new': RunPod pods take their command at creation.")],
    script: ScriptArg,
    args: ArgsArg = None,
    gpu: GpuOpt = None,
    gpu_count: Annotated[int | None, typer.Option(min=1, help="GPUs per pod.")] = None,
    cloud: Annotated[str | None, typer.Option(help="secure, community or all.")] = None,
    image: Annotated[str | None, typer.Option(help="Container image.")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="Interruptible pod.")] = False,
    bid: Annotated[float | None, typer.Option(parser=BID, help="Bid per GPU-hour (implies --spot).")] = None,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
    *,
    request: RemoteTrain,
) -> int:
    """Train SCRIPT on a new RunPod pod whose command is the agent; --wait follows it."""
    from runctl.core.errors import UsageError
    from runctl.providers.base import LaunchOptions

    if pod != "new":
        raise UsageError(
            "RunPod pods take their command when they are created: give 'new'",
            hint="runctl runpod train new train.py",
        )
    provider = _provider("runpod")
    options = LaunchOptions(
        gpus=gpu or (),
        gpu_count=gpu_count,
        zone=cloud,
        image=image,
        spot=spot,
        max_price=bid,
        name=request.name,
    )
    return _run(provider, _launch(provider, request, options), output, metrics_port)


@workflow_app.command("train")
@job_options(omit=("sync_code", "wait"), on_interrupt="terminate", output_dir=Path("outputs"), wait=True)
def workflow_train(
    script: ScriptArg,
    args: ArgsArg = None,
    provider_name: Annotated[str, typer.Option("--provider", help="aws or runpod.")] = "aws",
    instance_type: TypeOpt = None,
    gpu: GpuOpt = None,
    spot: SpotOpt = None,
    ami: AmiOpt = None,
    iam_instance_profile: ProfileOpt = None,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
    *,
    request: RemoteTrain,
) -> int:
    """Create a machine, train SCRIPT on it, wait, download outputs, release the machine."""
    from runctl.providers.base import LaunchOptions

    provider = _provider(provider_name)
    if provider.command_at_creation and (ami or iam_instance_profile):
        from runctl.core.errors import UsageError

        raise UsageError(
            "--ami and --iam-instance-profile are EC2 options",
            hint=f"drop them for --provider {provider_name}",
        )
    options = LaunchOptions(
        instance_type=instance_type,
        gpus=gpu or (),
        spot=spot,
        image=ami,
        iam_instance_profile=iam_instance_profile,
        name=request.name if provider.command_at_creation else None,
    )
    request.release_at_end = not request.keep_machine
    return _run(provider, _launch(provider, request, options), output, metrics_port)


def _remote_job(job_id: str) -> Any:
    from runctl.core.errors import ValidationError

    job = STATE.ledger().get_job(job_id)
    if job.storage_url is None:
        raise ValidationError(
            f"job {job.id} is a {job.provider} job with no remote storage",
            hint=f"use runctl logs {job.id} --follow",
        )
    if job.is_final:
        raise ValidationError(f"job {job.id} already ended ({job.state})", hint=f"runctl jobs show {job.id}")
    return job


def _follow(
    provider: ComputeProvider, job_id: str, request: RemoteTrain, output: OutputFormat, port: int | None
) -> int:
    quiet = output is OutputFormat.json
    trainer = _trainer(provider, quiet=quiet)
    with metrics_server(port, STATE.loaded().config, STATE.ledger()):
        result = trainer.wait(job_id, request)
    if quiet:
        render.print_json({"job": result.job.to_dict(), "exit_code": result.exit_code})
    else:
        render.info(
            f"job {result.job.id} {result.job.state}"
            + (f": {result.job.detail}" if result.job.detail else "")
        )
    return int(result.exit_code)


def jobs_wait(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A remote job to follow.")],
    auto_resume: Annotated[
        bool | None,
        typer.Option(
            "--auto-resume/--no-auto-resume",
            help="On preemption, continue on a new machine (default: as the job was submitted).",
            show_default=False,
        ),
    ] = None,
    poll_interval: PollOpt = "5s",
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Reattach to a remote job: follow its log and outcome until it ends, with the request it
    was submitted with (machine spec, limits, options)."""
    from runctl.core.errors import ValidationError
    from runctl.workflows.remote import STOPPED, stored_request

    job = _remote_job(job_id)
    if job.state == STOPPED:
        raise ValidationError(
            f"job {job.id} is stopped", hint=f"continue it: runctl jobs resume {job.id} --wait"
        )
    request = stored_request(job)
    if auto_resume is not None:
        request.auto_resume = auto_resume
    request.poll_interval = duration_arg("--poll-interval", poll_interval) or 5.0
    return _follow(_provider(job.provider), job.id, request, output, metrics_port)


def jobs_resume(
    job_id: Annotated[
        str, typer.Argument(metavar="JOB", help="A remote job stopped with --on-interrupt stop.")
    ],
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    poll_interval: PollOpt = "5s",
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Start a stopped job's machine again; the agent resumes from the latest checkpoint."""
    from runctl.workflows.remote import stored_request

    job = _remote_job(job_id)
    provider = _provider(job.provider)
    job = _trainer(provider, quiet=output is OutputFormat.json).resume(job.id)
    render.info(f"job {job.id} running again (attempt {job.attempt})")
    if not wait:
        if output is OutputFormat.json:
            render.print_json({"job": job.to_dict(), "exit_code": 0})
        return 0
    request = stored_request(job)
    request.poll_interval = duration_arg("--poll-interval", poll_interval) or 5.0
    return _follow(provider, job.id, request, output, metrics_port)
