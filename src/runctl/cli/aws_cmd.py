"""``runctl aws create|start|stop|terminate|status|wait|list`` and ``runctl aws ebs …``.

Thin: options are turned into calls on :class:`runctl.providers.aws.provider.AwsProvider`, whose
answers are rendered. INSTANCE / VOLUME arguments accept an EC2 id or a runctl resource id
(``r-…``). Progress goes to stderr; with ``--output json`` (or ``id``) stdout holds only the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import launching, render
from runctl.cli.launching import CreateOutput, CreateOutputOpt, DryRunOpt
from runctl.cli.options import MONEY, OutputOpt, OverBudgetOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.providers.aws.provider import AwsProvider

app = typer.Typer(help="EC2 instances and EBS volumes, tracked in the ledger.", no_args_is_help=True)
ebs_app = typer.Typer(help="EBS volumes and snapshots, tracked in the ledger.", no_args_is_help=True)
app.add_typer(ebs_app, name="ebs")

InstanceArg = Annotated[
    str, typer.Argument(metavar="INSTANCE", help="Instance id (i-…) or resource id (r-…).")
]
VolumeArg = Annotated[str, typer.Argument(metavar="VOLUME", help="Volume id (vol-…) or resource id (r-…).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Act even on a resource runctl does not own.")]


def _provider(*, quiet: bool = False) -> AwsProvider:
    from runctl.providers import registry
    from runctl.providers.aws.provider import AwsProvider

    provider = registry.compute(
        "aws", STATE.ledger(), STATE.loaded().config, progress=None if quiet else render.info
    )
    assert isinstance(provider, AwsProvider)
    return provider


def _cost(provider: AwsProvider, resource_id: str | None) -> float | None:
    from runctl.core.cost import resource_cost

    return None if resource_id is None else round(resource_cost(provider.ledger, resource_id), 6)


def _instance_row(provider: AwsProvider, instance: Any) -> dict[str, Any]:
    row = provider.ledger.find_resource("aws", instance.id)
    data = instance.to_dict()
    data["resource_id"] = row.id if row else instance.ledger_id
    data["in_ledger"] = row is not None
    data["rate_usd_per_hour"] = row.rate_usd_per_hour if row else None
    data["cost_usd"] = _cost(provider, row.id if row else None)
    return data


def _show_instances(rows: list[dict[str, Any]], output: OutputFormat, *, single: bool = False) -> None:
    if output is OutputFormat.json:
        render.print_json(rows[0] if single else rows)
        return
    render.table(
        None,
        ["ID", "RESOURCE", "NAME", "TYPE", "MARKET", "STATE", "ZONE", "RATE/H", "COST", "LAUNCHED"],
        [
            (
                r["id"],
                r["resource_id"] if r["in_ledger"] else f"{r['resource_id'] or '-'} (not in ledger)",
                r["name"],
                r["instance_type"],
                r["market"],
                r["state"],
                r["zone"],
                render.usd(r["rate_usd_per_hour"]),
                render.usd(r["cost_usd"]),
                render.when(r["launched_at"]),
            )
            for r in rows
        ],
    )


@app.command("create")
def create(
    instance_type: Annotated[
        str | None, typer.Argument(metavar="[TYPE]", help="EC2 type (default: aws.default_instance_type).")
    ] = None,
    spot: Annotated[
        bool | None,
        typer.Option("--spot/--on-demand", help="Market (default: aws.use_spot).", show_default=False),
    ] = None,
    fallback: Annotated[
        bool | None,
        typer.Option(
            "--fallback/--no-fallback",
            help="Fall back from spot to on-demand when no zone has spot capacity "
            "(default: aws.fallback_to_on_demand).",
            show_default=False,
        ),
    ] = None,
    max_price: Annotated[
        float | None, typer.Option("--max-price", parser=MONEY, help="Spot: most USD/hour to pay.")
    ] = None,
    az: Annotated[
        str | None, typer.Option("--az", help="Only this zone (default: walk the region's zones).")
    ] = None,
    ami: Annotated[
        str | None, typer.Option("--ami", help="Image id (default: newest DLAMI for GPU types, else AL2023).")
    ] = None,
    iam_instance_profile: Annotated[
        str | None, typer.Option("--iam-instance-profile", help="Instance profile name or ARN.")
    ] = None,
    data_volume: Annotated[
        str | None, typer.Option("--data-volume", metavar="VOL", help="Attach this EBS volume (same zone).")
    ] = None,
    root_size: Annotated[
        int | None, typer.Option("--root-size", help="Root volume GB (default: aws.root_volume_gb).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name tag (default: runctl-<resource id>).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Return once the instance is running.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Go past aws.max_running_instances.")] = False,
    over_budget: OverBudgetOpt = False,
    dry_run: DryRunOpt = False,
    output: CreateOutputOpt = CreateOutput.table,
) -> None:
    """Create an EC2 instance: recorded in the ledger first, tagged, priced, cleaned up on failure.

    The priced plan is checked against the [cost] limits first: a launch that would break one
    is refused (exit 79) before anything is created, unless --over-budget.
    """
    from runctl.providers.base import LaunchOptions

    options = LaunchOptions(
        instance_type=instance_type,
        spot=spot,
        fallback=fallback,
        max_price=max_price,
        zone=az,
        image=ami,
        iam_instance_profile=iam_instance_profile,
        data_volume=data_volume,
        disk_gb=root_size,
        name=name,
    )
    launching.create(
        "aws",
        options,
        over_budget=over_budget,
        dry_run=dry_run,
        output=output,
        allow_over_limit=yes,
        wait=wait,
    )


@app.command("start")
def start(
    instance: InstanceArg,
    force: ForceOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Go past aws.max_running_instances.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Start a stopped instance; returns once it is running."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.instances.start(
        provider.resolve(instance, "instance"), force=force, allow_over_limit=yes
    )
    _show_instances([_instance_row(provider, found)], output, single=True)


@app.command("stop")
def stop(instance: InstanceArg, force: ForceOpt = False, output: OutputOpt = OutputFormat.table) -> None:
    """Stop an instance (on-demand only); returns once it is stopped."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.instances.stop(provider.resolve(instance, "instance"), force=force)
    _show_instances([_instance_row(provider, found)], output, single=True)


@app.command("terminate")
def terminate(instance: InstanceArg, force: ForceOpt = False, output: OutputOpt = OutputFormat.table) -> None:
    """Terminate an instance; returns once AWS reports it terminated."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.instances.terminate(provider.resolve(instance, "instance"), force=force)
    _show_instances([_instance_row(provider, found)], output, single=True)


@app.command("status")
def status(
    instance: Annotated[
        str | None, typer.Argument(metavar="[INSTANCE]", help="One instance (default: all of runctl's).")
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show instances as AWS reports them now, and bring the ledger up to date with it."""
    provider = _provider(quiet=output is OutputFormat.json)
    if instance is not None:
        ids = [provider.resolve(instance, "instance")]
        provider.instances.require(ids[0])
    else:
        ids = [i.id for i in provider.instances.list_instances()]
    found = [i for i in (provider.instances.sync(x) for x in ids) if i is not None]
    _show_instances([_instance_row(provider, i) for i in found], output)


@app.command("wait")
def wait(
    instance: InstanceArg,
    state: Annotated[str, typer.Option("--state", help="running, stopped or terminated.")] = "running",
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Give up after this long (e.g. 10m).")
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Wait until an instance reaches a state (and record it)."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.instances.wait(
        provider.resolve(instance, "instance"), state, timeout=duration_arg("--timeout", timeout)
    )
    _show_instances([_instance_row(provider, found)], output, single=True)


@app.command("list")
def list_(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Every instance in the region, terminated ones too.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List runctl's instances as AWS reports them (read-only; 'status' also updates the ledger)."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.instances.list_instances(
        managed_only=not all_, states=None if all_ else ("pending", "running", "stopping", "stopped")
    )
    _show_instances([_instance_row(provider, i) for i in found], output)


# -- EBS ---------------------------------------------------------------------------------------


def _volume_rows(provider: AwsProvider, items: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        row = provider.ledger.find_resource("aws", item.id)
        data = item.to_dict()
        data["resource_id"] = row.id if row else data.get("ledger_id")
        data["in_ledger"] = row is not None
        data["persistent"] = bool(row and row.persistent)
        data["rate_usd_per_hour"] = row.rate_usd_per_hour if row else None
        data["cost_usd"] = _cost(provider, row.id if row else None)
        rows.append(data)
    return rows


def _volume_table(rows: list[dict[str, Any]]) -> None:
    render.table(
        None,
        ["ID", "KIND", "RESOURCE", "STATE", "SIZE GB", "TYPE", "ZONE", "ATTACHED TO", "PERSISTENT", "RATE/H"],
        [
            (
                r["id"],
                r["kind"],
                r["resource_id"] if r["in_ledger"] else f"{r['resource_id'] or '-'} (not in ledger)",
                r["state"],
                r["size_gb"],
                r.get("volume_type", ""),
                r.get("zone", ""),
                (r["attachments"][0]["instance_id"] if r.get("attachments") else r.get("volume_id", "")),
                "yes" if r["persistent"] else "",
                render.usd(r["rate_usd_per_hour"]),
            )
            for r in rows
        ],
    )


def _show_volume(provider: AwsProvider, item: Any, output: str) -> None:
    row = _volume_rows(provider, [item])[0]
    if output == "id":
        typer.echo(row["id"])
    elif output == "json":
        render.print_json(row)
    else:
        _volume_table([row])


@ebs_app.command("create")
def ebs_create(
    size: Annotated[int, typer.Option("--size", help="Size in GB.")],
    volume_type: Annotated[
        str, typer.Option("--type", help="gp3, gp2, io1, io2, st1, sc1, standard.")
    ] = "gp3",
    iops: Annotated[int | None, typer.Option("--iops", help="Provisioned IOPS (gp3, io1, io2).")] = None,
    throughput: Annotated[int | None, typer.Option("--throughput", help="MiB/s (gp3).")] = None,
    az: Annotated[str | None, typer.Option("--az", help="Zone (default: the region's first).")] = None,
    persistent: Annotated[
        bool, typer.Option("--persistent", help="Never removed by cleanup; delete needs --force.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name tag.")] = None,
    output: CreateOutputOpt = CreateOutput.table,
) -> None:
    """Create an EBS volume (recorded first, tagged, priced); returns once it is available."""
    provider = _provider(quiet=output is not CreateOutput.table)
    _, volume = provider.volumes.create(
        size_gb=size,
        volume_type=volume_type,
        iops=iops,
        throughput=throughput,
        zone=az,
        persistent=persistent,
        name=name,
    )
    _show_volume(provider, volume, output)


@ebs_app.command("attach")
def ebs_attach(
    volume: VolumeArg,
    instance: InstanceArg,
    device: Annotated[str, typer.Option("--device", help="Device name on the instance.")] = "/dev/sdf",
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Attach a volume to an instance in the same zone; returns once attached."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.volumes.attach(
        provider.resolve(volume, "volume"), provider.resolve(instance, "instance"), device=device
    )
    _show_volume(provider, found, output)


@ebs_app.command("detach")
def ebs_detach(
    volume: VolumeArg,
    force: Annotated[
        bool, typer.Option("--force", help="Force the detach (may lose unflushed data).")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Detach a volume from its instance; returns once it is available."""
    provider = _provider(quiet=output is OutputFormat.json)
    found = provider.volumes.detach(provider.resolve(volume, "volume"), force=force)
    _show_volume(provider, found, output)


@ebs_app.command("snapshot")
def ebs_snapshot(
    volume: VolumeArg,
    description: Annotated[str | None, typer.Option("--description", help="Snapshot description.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Return once the snapshot is complete.")] = False,
    output: CreateOutputOpt = CreateOutput.table,
) -> None:
    """Snapshot a volume (recorded in the ledger; kept by cleanup)."""
    provider = _provider(quiet=output is not CreateOutput.table)
    _, snap = provider.volumes.snapshot(
        provider.resolve(volume, "volume"), description=description, wait=wait
    )
    _show_volume(provider, snap, output)


@ebs_app.command("delete")
def ebs_delete(
    target: Annotated[
        str, typer.Argument(metavar="ID", help="Volume (vol-…), snapshot (snap-…) or resource id (r-…).")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Also a persistent volume, or one runctl does not own.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Delete a volume or snapshot; returns once AWS no longer has it."""
    provider = _provider(quiet=output is OutputFormat.json)
    kind = "snapshot" if target.startswith("snap-") else "volume"
    if target.startswith("r-"):
        kind = provider.ledger.get_resource(target).kind
    cloud_id = provider.resolve(target, kind)
    state = provider.volumes.delete(cloud_id, force=force)
    if output is OutputFormat.json:
        render.print_json({"id": cloud_id, "state": state})
    else:
        render.info(f"{cloud_id} {state}")


@ebs_app.command("list")
def ebs_list(output: OutputOpt = OutputFormat.table) -> None:
    """List runctl's volumes and snapshots as AWS reports them."""
    provider = _provider(quiet=output is OutputFormat.json)
    items = [*provider.volumes.list_volumes(), *provider.volumes.list_snapshots()]
    rows = _volume_rows(provider, items)
    if output is OutputFormat.json:
        render.print_json(rows)
    else:
        _volume_table(rows)
