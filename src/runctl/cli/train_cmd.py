"""``runctl aws train``, ``runctl workflow train`` and ``runctl jobs wait``: remote training.

The work is in :mod:`runctl.workflows.remote`; these commands parse, pick the provider and
render. ``aws train INSTANCE`` uses a machine runctl created (``new`` creates one);
``workflow train`` always creates one and releases it at the end (create → sync → train →
wait → download outputs → terminate).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runctl.cli import render
from runctl.cli.cost_cmd import OverBudgetOpt
from runctl.cli.observe import MetricsPortOpt, metrics_server
from runctl.cli.options import BID, OutputOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.providers.base import ComputeProvider
    from runctl.workflows.remote import RemoteTrain

workflow_app = typer.Typer(
    help="Multi-step workflows (create → train → collect → release).", no_args_is_help=True
)

ScriptArg = Annotated[str, typer.Argument(help="The script, relative to the project directory.")]
ArgsArg = Annotated[list[str] | None, typer.Argument(help="Arguments for the script (after --).")]
NameOpt = Annotated[str | None, typer.Option(help="Job name (default: the script's name).")]
ProjectOpt = Annotated[Path, typer.Option(help="The project directory bundled as the code.")]
SyncOpt = Annotated[bool, typer.Option(help="Upload the project (gitignore-aware) to the job's storage.")]
WaitOpt = Annotated[bool, typer.Option(help="Follow the job (logs, outcome) until it ends.")]
ResumeOpt = Annotated[
    bool, typer.Option(help="On preemption, continue on a new machine from the latest checkpoint.")
]
RestartsOpt = Annotated[int, typer.Option(min=0, help="Re-runs allowed after a code failure.")]
PreemptOpt = Annotated[int, typer.Option(min=0, help="Spot preemptions before falling back to on-demand.")]
InterruptOpt = Annotated[str, typer.Option(help="What Ctrl-C does: detach, stop or terminate.")]
GraceOpt = Annotated[str, typer.Option(help="Time the script gets to save after SIGTERM.")]
MaxDurOpt = Annotated[str | None, typer.Option(help="Stop the job after this long (e.g. 12h).")]
KeepNOpt = Annotated[int | None, typer.Option(min=1, help="Checkpoints kept in storage.")]
KeepOpt = Annotated[bool, typer.Option(help="Keep the machine running after the job ends.")]
OutDirOpt = Annotated[Path | None, typer.Option(help="Download the job's outputs here at the end.")]
DataOpt = Annotated[str | None, typer.Option(help="Input data URI, passed as RUNCTL_DATA_URI.")]
TypeOpt = Annotated[str | None, typer.Option(help="Instance type for a new machine.")]
SpotOpt = Annotated[
    bool | None, typer.Option("--spot/--on-demand", help="Market for a new machine.", show_default=False)
]
GpuOpt = Annotated[list[str] | None, typer.Option(help="RunPod GPU type; repeat to allow fallbacks.")]
PollOpt = Annotated[str, typer.Option(help="How often the controller looks at the job.", hidden=True)]


def _request(
    script: str,
    args: list[str] | None,
    *,
    name: str | None,
    project_dir: Path,
    sync_code: bool,
    wait: bool,
    auto_resume: bool,
    max_restarts: int,
    max_preemptions: int,
    on_interrupt: str,
    grace_period: str,
    max_duration: str | None,
    keep_last_n: int | None,
    keep: bool,
    output_dir: Path | None,
    data: str | None,
    poll_interval: str,
) -> RemoteTrain:
    from runctl.core.errors import UsageError
    from runctl.workflows.remote import RemoteTrain

    if on_interrupt not in ("detach", "stop", "terminate"):
        raise UsageError(f"--on-interrupt {on_interrupt!r} is not one of detach, stop, terminate")
    return RemoteTrain(
        script=script,
        args=list(args or []),
        name=name,
        project_dir=project_dir,
        sync_code=sync_code,
        wait=wait,
        auto_resume=auto_resume,
        max_restarts=max_restarts,
        max_preemptions=max_preemptions,
        on_interrupt=on_interrupt,  # type: ignore[arg-type]
        grace_period=duration_arg("--grace-period", grace_period) or 30.0,
        max_duration=duration_arg("--max-duration", max_duration),
        keep_last_n=keep_last_n,
        keep_machine=keep,
        outputs_to=output_dir,
        env={"RUNCTL_DATA_URI": data} if data else {},
        poll_interval=duration_arg("--poll-interval", poll_interval) or 5.0,
    )


def _aws() -> ComputeProvider:
    from runctl.providers.aws.provider import AwsProvider

    return AwsProvider(STATE.ledger(), STATE.loaded().config, progress=render.info)


def _runpod() -> ComputeProvider:
    from runctl.providers.runpod.provider import RunpodProvider

    return RunpodProvider.from_config(STATE.ledger(), STATE.loaded().config)


def _provider(name: str) -> ComputeProvider:
    from runctl.core.errors import UsageError

    if name not in ("aws", "runpod"):
        raise UsageError(f"--provider {name!r} is not one of aws, runpod")
    return _aws() if name == "aws" else _runpod()


def _run(
    provider: ComputeProvider, request: RemoteTrain, output: OutputFormat, metrics_port: int | None
) -> int:
    from runctl.workflows.remote import RemoteTrainer

    quiet = output is OutputFormat.json
    trainer = RemoteTrainer(
        provider,
        STATE.ledger(),
        STATE.loaded().config,
        echo=None if quiet else sys.stdout.buffer,
        say=render.info,
    )
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


def aws_train(
    instance: Annotated[
        str, typer.Argument(help="Instance id or ledger id of a runctl machine, or 'new' to create one.")
    ],
    script: ScriptArg,
    args: ArgsArg = None,
    name: NameOpt = None,
    project_dir: ProjectOpt = Path("."),
    sync_code: SyncOpt = True,
    instance_type: TypeOpt = None,
    spot: SpotOpt = None,
    wait: WaitOpt = False,
    auto_resume: ResumeOpt = False,
    max_restarts: RestartsOpt = 0,
    max_preemptions: PreemptOpt = 3,
    on_interrupt: InterruptOpt = "detach",
    grace_period: GraceOpt = "30s",
    max_duration: MaxDurOpt = None,
    keep_last_n: KeepNOpt = None,
    keep: KeepOpt = False,
    output_dir: OutDirOpt = None,
    data_s3: DataOpt = None,
    poll_interval: PollOpt = "5s",
    over_budget: OverBudgetOpt = False,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Train SCRIPT on an EC2 machine: the agent runs it, syncing to storage; --wait follows it."""
    request = _request(
        script,
        args,
        name=name,
        project_dir=project_dir,
        sync_code=sync_code,
        wait=wait,
        auto_resume=auto_resume,
        max_restarts=max_restarts,
        max_preemptions=max_preemptions,
        on_interrupt=on_interrupt,
        grace_period=grace_period,
        max_duration=max_duration,
        keep_last_n=keep_last_n,
        keep=keep,
        output_dir=output_dir,
        data=data_s3,
        poll_interval=poll_interval,
    )
    request.over_budget = over_budget
    provider = _aws()
    if instance == "new":
        request.spec = provider.machine_spec(instance_type, spot=spot)  # type: ignore[attr-defined]
    else:
        request.machine = instance
    return _run(provider, request, output, metrics_port)


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
    name: NameOpt = None,
    project_dir: ProjectOpt = Path("."),
    sync_code: SyncOpt = True,
    wait: WaitOpt = False,
    auto_resume: ResumeOpt = False,
    max_restarts: RestartsOpt = 0,
    max_preemptions: PreemptOpt = 3,
    on_interrupt: InterruptOpt = "detach",
    grace_period: GraceOpt = "30s",
    max_duration: MaxDurOpt = None,
    keep_last_n: KeepNOpt = None,
    output_dir: OutDirOpt = None,
    data_s3: DataOpt = None,
    poll_interval: PollOpt = "5s",
    over_budget: OverBudgetOpt = False,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Train SCRIPT on a new RunPod pod whose command is the agent; --wait follows it."""
    from runctl.cli.runpod_cmd import pod_spec
    from runctl.core.errors import UsageError

    if pod != "new":
        raise UsageError(
            "RunPod pods take their command when they are created: give 'new'",
            hint="runctl runpod train new train.py",
        )
    request = _request(
        script,
        args,
        name=name,
        project_dir=project_dir,
        sync_code=sync_code,
        wait=wait,
        auto_resume=auto_resume,
        max_restarts=max_restarts,
        max_preemptions=max_preemptions,
        on_interrupt=on_interrupt,
        grace_period=grace_period,
        max_duration=max_duration,
        keep_last_n=keep_last_n,
        keep=False,
        output_dir=output_dir,
        data=data_s3,
        poll_interval=poll_interval,
    )
    request.spec = pod_spec(
        STATE.loaded().config.runpod,
        gpu=gpu,
        gpu_count=gpu_count,
        cloud=cloud,
        disk=None,
        volume=None,
        image=image,
        spot=spot,
        bid=bid,
        name=name,
    )
    request.over_budget = over_budget
    return _run(_runpod(), request, output, metrics_port)


@workflow_app.command("train")
def workflow_train(
    script: ScriptArg,
    args: ArgsArg = None,
    provider_name: Annotated[str, typer.Option("--provider", help="aws or runpod.")] = "aws",
    instance_type: TypeOpt = None,
    gpu: GpuOpt = None,
    spot: SpotOpt = None,
    name: NameOpt = None,
    project_dir: ProjectOpt = Path("."),
    auto_resume: ResumeOpt = False,
    max_restarts: RestartsOpt = 0,
    max_preemptions: PreemptOpt = 3,
    on_interrupt: InterruptOpt = "terminate",
    grace_period: GraceOpt = "30s",
    max_duration: MaxDurOpt = None,
    keep_last_n: KeepNOpt = None,
    keep: KeepOpt = False,
    output_dir: OutDirOpt = Path("outputs"),
    data_s3: DataOpt = None,
    poll_interval: PollOpt = "5s",
    over_budget: OverBudgetOpt = False,
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Create a machine, train SCRIPT on it, wait, download outputs, release the machine."""
    provider = _provider(provider_name)
    request = _request(
        script,
        args,
        name=name,
        project_dir=project_dir,
        sync_code=True,
        wait=True,
        auto_resume=auto_resume,
        max_restarts=max_restarts,
        max_preemptions=max_preemptions,
        on_interrupt=on_interrupt,
        grace_period=grace_period,
        max_duration=max_duration,
        keep_last_n=keep_last_n,
        keep=keep,
        output_dir=output_dir,
        data=data_s3,
        poll_interval=poll_interval,
    )
    if provider_name == "aws":
        request.spec = provider.machine_spec(instance_type, spot=spot)  # type: ignore[attr-defined]
    else:
        from runctl.cli.runpod_cmd import pod_spec

        request.spec = pod_spec(
            STATE.loaded().config.runpod,
            gpu=gpu,
            gpu_count=None,
            cloud=None,
            disk=None,
            volume=None,
            image=None,
            spot=bool(spot),
            bid=None,
            name=name,
        )
    request.release_at_end = not keep
    request.over_budget = over_budget
    return _run(provider, request, output, metrics_port)


def jobs_wait(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A remote job to follow.")],
    auto_resume: ResumeOpt = False,
    poll_interval: PollOpt = "5s",
    metrics_port: MetricsPortOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> int:
    """Reattach to a remote job: follow its log and outcome until it ends."""
    from runctl.core.errors import ValidationError
    from runctl.workflows.remote import RemoteTrain, RemoteTrainer

    ledger = STATE.ledger()
    job = ledger.get_job(job_id)
    if job.storage_url is None:
        raise ValidationError(
            f"job {job.id} is a {job.provider} job with no remote storage",
            hint=f"use runctl logs {job.id} --follow",
        )
    if job.is_final:
        raise ValidationError(f"job {job.id} already ended ({job.state})", hint=f"runctl jobs show {job.id}")
    provider = _provider(job.provider)
    request = RemoteTrain(
        script=job.script,
        args=job.args,
        auto_resume=auto_resume,
        poll_interval=duration_arg("--poll-interval", poll_interval) or 5.0,
    )
    quiet = output is OutputFormat.json
    trainer = RemoteTrainer(
        provider, ledger, STATE.loaded().config, echo=None if quiet else sys.stdout.buffer, say=render.info
    )
    with metrics_server(metrics_port, STATE.loaded().config, ledger):
        result = trainer.wait(job.id, request)
    if quiet:
        render.print_json({"job": result.job.to_dict(), "exit_code": result.exit_code})
    else:
        render.info(f"job {result.job.id} {result.job.state}")
    return result.exit_code
