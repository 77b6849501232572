"""``runctl agent run``: what the controller starts on the machine (see runctl.agent.runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from runctl.cli.options import duration_arg

app = typer.Typer(
    help="The on-machine agent (started by the providers; rarely run by hand).", no_args_is_help=True
)


@app.command("run")
def run(
    script: Annotated[str, typer.Argument(help="The script, relative to the code bundle.")],
    job_id: Annotated[str, typer.Option(help="The job's ledger id.")],
    storage: Annotated[str, typer.Option(help="The job's storage root: s3://B/P or a directory.")],
    args: Annotated[list[str] | None, typer.Argument(help="Script arguments (after --).")] = None,
    storage_endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="RUNCTL_STORAGE__ENDPOINT_URL", help="S3-compatible endpoint of --storage."),
    ] = None,
    storage_region: Annotated[
        str | None, typer.Option(envvar="RUNCTL_STORAGE__REGION", help="Region of --storage.")
    ] = None,
    storage_checksums: Annotated[
        bool,
        typer.Option(envvar="RUNCTL_STORAGE__S3_CHECKSUMS", help="Send S3's x-amz-checksum-* headers."),
    ] = True,
    name: Annotated[str | None, typer.Option(help="Job name.")] = None,
    attempt: Annotated[int, typer.Option(min=1, help="Attempt number.")] = 1,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in storage.")] = True,
    workdir: Annotated[Path, typer.Option(help="Local work directory.")] = Path("runctl-work"),
    grace_period: Annotated[str, typer.Option(help="Time to save after SIGTERM.")] = "30s",
    max_duration: Annotated[str | None, typer.Option(help="Stop the job after this long.")] = None,
    heartbeat: Annotated[str, typer.Option(help="Status/checkpoint/log sync interval.")] = "5s",
    keep_last_n: Annotated[int | None, typer.Option(min=1, help="Checkpoints kept in storage.")] = None,
    watch_spot: Annotated[bool, typer.Option(help="Poll IMDSv2 for spot interruption notices.")] = False,
    imds_endpoint: Annotated[str | None, typer.Option(help="IMDS endpoint (tests).")] = None,
    on_exit: Annotated[
        Literal["none", "stop", "terminate"], typer.Option(help="What to do with this machine at the end.")
    ] = "none",
    keep: Annotated[bool, typer.Option(help="Keep the machine after the job ends.")] = False,
    idle_timeout: Annotated[str | None, typer.Option(help="With --keep: stop after idle this long.")] = None,
    python: Annotated[str | None, typer.Option(help="Interpreter for a .py script.")] = None,
    setup: Annotated[str | None, typer.Option(help="Run once per machine before the script.")] = None,
    setup_timeout: Annotated[str, typer.Option(help="How long --setup may take.")] = "60m",
    deps: Annotated[
        Literal["auto", "none"], typer.Option(help="auto: install the project's dependencies first.")
    ] = "none",
    hang_timeout: Annotated[
        str | None, typer.Option(help="Stop the script as hung after no progress for this long.")
    ] = None,
    hang_gpu_util: Annotated[
        float,
        typer.Option(
            min=0, max=100, help="GPU utilisation (%) at or above which the GPU counts as progress."
        ),
    ] = 5.0,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Serve this process's /metrics on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address --metrics-port binds.")] = "127.0.0.1",
) -> int:
    """Run SCRIPT as job JOB_ID, syncing checkpoints, logs and status to STORAGE."""
    from runctl.agent.imds import Imds
    from runctl.agent.runner import AgentOptions, run_agent
    from runctl.agent.storage_settings import agent_storage_config
    from runctl.storage import open_storage

    options = AgentOptions(
        job_id=job_id,
        script=script,
        args=list(args or []),
        job_name=name,
        attempt=attempt,
        resume=resume,
        workdir=workdir,
        grace_period=duration_arg("--grace-period", grace_period) or 30,
        max_duration=duration_arg("--max-duration", max_duration),
        heartbeat=duration_arg("--heartbeat", heartbeat) or 5,
        keep_last_n=keep_last_n,
        watch_spot=watch_spot,
        on_exit=on_exit,
        keep=keep,
        idle_timeout=duration_arg("--idle-timeout", idle_timeout),
        python=python,
        setup=setup,
        setup_timeout=duration_arg("--setup-timeout", setup_timeout) or 3600.0,
        deps=deps,
        hang_timeout=duration_arg("--hang-timeout", hang_timeout),
        hang_gpu_util=hang_gpu_util,
    )
    use_imds = watch_spot or on_exit != "none"
    if metrics_port is not None:  # the machine has no ledger: this process's counters only
        from runctl.core import metrics

        metrics.serve(metrics_port, addr=metrics_host)
    settings = agent_storage_config(
        endpoint_url=storage_endpoint_url, region=storage_region, s3_checksums=storage_checksums
    )
    store = open_storage(storage, settings)
    result = run_agent(options, store, imds=Imds(imds_endpoint) if use_imds else None)
    if result.error is not None:  # recorded in storage; the person or log reading stderr is told too
        raise result.error
    return result.exit_code
