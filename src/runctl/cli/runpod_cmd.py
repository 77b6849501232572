"""``runctl runpod gpus|create|list|status|stop|resume|terminate``: RunPod GPU pods.

POD arguments accept a RunPod pod id or a ledger resource id (``r-…``). Pods runctl created are
ledger resources (intent first, costed, reconciled); ``status``/``stop``/``resume`` also work on
other pods of the account, but ``terminate`` refuses a pod that is not in the ledger unless
``--force`` is given, so a typo cannot destroy someone else's machine.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import launching, render
from runctl.cli.launching import CreateOutput, DryRunOpt
from runctl.cli.options import BID, OutputOpt, OverBudgetOpt
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.core.ledger import Resource
    from runctl.providers.runpod.api import Pod
    from runctl.providers.runpod.provider import RunpodProvider

app = typer.Typer(
    help="RunPod GPU pods: prices, create, list, stop, resume, terminate.", no_args_is_help=True
)

PodArg = Annotated[str, typer.Argument(metavar="POD", help="Pod id, or runctl resource id (r-…).")]


class Cloud(StrEnum):
    secure = "secure"
    community = "community"
    all = "all"


def _provider() -> RunpodProvider:
    from runctl.providers import registry
    from runctl.providers.runpod.provider import RunpodProvider

    provider = registry.compute("runpod", STATE.ledger(), STATE.loaded().config)
    assert isinstance(provider, RunpodProvider)
    return provider


def _resolve(provider: RunpodProvider, ref: str) -> tuple[Resource | None, str | None]:
    """The ledger row (if runctl manages the pod) and the pod id for a POD argument."""
    from runctl.core.errors import NotFoundError

    ledger = provider.ledger
    if ref.startswith("r-"):
        try:
            resource = ledger.get_resource(ref)
        except NotFoundError:
            resource = None
        if resource is not None and resource.provider == "runpod":
            return resource, resource.cloud_id
    return ledger.find_resource("runpod", ref), ref


def _cost(provider: RunpodProvider, resource: Resource | None) -> float | None:
    from runctl.core.cost import resource_cost

    return None if resource is None else resource_cost(provider.ledger, resource.id)


def _pod_row(pod: Pod, resource: Resource | None = None, cost: float | None = None) -> dict[str, Any]:
    row = pod.to_dict()
    row["resource_id"] = resource.id if resource else pod.resource_id
    row["managed"] = resource is not None
    row["ledger_state"] = resource.state if resource else None
    row["cost_usd"] = None if cost is None else round(cost, 6)
    return row


def _volume_note(volume_gb: int | None) -> str | None:
    from runctl.providers.runpod.provider import stopped_volume_usd_per_month

    if not volume_gb:
        return None
    return (
        f"its {volume_gb} GB volume still bills about ${stopped_volume_usd_per_month(volume_gb):.2f}"
        "/month at RunPod until the pod is terminated"
    )


@app.command("gpus")
def gpus(
    gpu_count: Annotated[int, typer.Option(min=1, help="Price for this many GPUs per pod.")] = 1,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List RunPod GPU types with their hourly prices (per GPU), cheapest first."""
    types = _provider().gpu_types(gpu_count)
    if output is OutputFormat.json:
        render.print_json([g.to_dict() for g in types])
        return
    render.table(
        None,
        ["ID", "NAME", "MEM GB", "SECURE", "COMMUNITY", "SECURE SPOT", "COMMUNITY SPOT", "MIN BID"],
        [
            (
                g.id,
                g.display_name,
                g.memory_gb,
                render.usd(g.secure_price),
                render.usd(g.community_price),
                render.usd(g.secure_spot_price),
                render.usd(g.community_spot_price),
                render.usd(g.minimum_bid_price),
            )
            for g in types
        ],
    )


@app.command("create")
def create(
    gpu: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu",
            help="GPU type id or name (runctl runpod gpus). Repeat to allow fallbacks, tried in "
            "order when RunPod has no capacity. Default: the config key runpod.default_gpu.",
        ),
    ] = None,
    gpu_count: Annotated[int | None, typer.Option(min=1, help="GPUs per pod.")] = None,
    cloud: Annotated[
        Cloud | None, typer.Option(help="secure, community, or all (secure first). Default: config.")
    ] = None,
    disk: Annotated[int | None, typer.Option(min=1, help="Container disk in GB.")] = None,
    volume: Annotated[
        int | None, typer.Option(min=0, help="Persistent volume in GB (at /workspace).")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Container image.")] = None,
    spot: Annotated[
        bool, typer.Option("--spot", help="Interruptible pod (cheaper, may be stopped).")
    ] = False,
    bid: Annotated[
        float | None,
        typer.Option(parser=BID, help="Bid in USD per GPU-hour (implies --spot; default: spot price)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label added to the pod name.")] = None,
    over_budget: OverBudgetOpt = False,
    dry_run: DryRunOpt = False,
    output: Annotated[
        CreateOutput, typer.Option("--output", "-o", help="table, json, or id (just the pod id).")
    ] = CreateOutput.table,
) -> None:
    """Create a GPU pod (recorded in the ledger before it is requested).

    The priced plan is checked against the [cost] limits first: a launch that would break one
    is refused (exit 79) before anything is created, unless --over-budget.
    """
    from runctl.providers.base import LaunchOptions

    options = LaunchOptions(
        gpus=gpu or (),
        gpu_count=gpu_count,
        zone=cloud.value if cloud else None,
        disk_gb=disk,
        volume_gb=volume,
        image=image,
        spot=spot,
        max_price=bid,
        name=name,
    )
    launching.create("runpod", options, over_budget=over_budget, dry_run=dry_run, output=output)


@app.command("list")
def list_pods(output: OutputOpt = OutputFormat.table) -> None:
    """List the account's pods; RESOURCE marks the ones runctl created."""
    provider = _provider()
    rows = []
    for pod in provider.api.list_pods():
        resource = provider.ledger.find_resource("runpod", pod.id)
        rows.append(_pod_row(pod, resource, _cost(provider, resource)))
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    render.table(
        None,
        ["ID", "NAME", "STATUS", "GPU", "RATE", "UPTIME", "RESOURCE", "COST"],
        [
            (
                r["id"],
                r["name"],
                r["status"],
                f"{r['gpu'] or ''} x{r['gpu_count'] or 0}",
                f"{render.usd(r['cost_per_hr'])}/h",
                render.duration(r["uptime_s"]),
                r["resource_id"] if r["managed"] else "",
                render.usd(r["cost_usd"]),
            )
            for r in rows
        ],
    )


def _show(provider: RunpodProvider, pod: Pod | None, resource: Resource | None, output: OutputFormat) -> None:
    if pod is None:
        assert resource is not None
        data: dict[str, Any] = {
            "id": resource.cloud_id,
            "status": "GONE",
            **_ledger_fields(provider, resource),
        }
    else:
        data = _pod_row(pod, resource, _cost(provider, resource))
    note = _volume_note(pod.volume_gb) if pod is not None and pod.state == "exited" else None
    data["note"] = note
    if output is OutputFormat.json:
        render.print_json(data)
        return
    render.fields(
        [
            ("pod", data.get("id")),
            ("name", data.get("name")),
            ("status", data.get("status")),
            ("gpu", f"{data.get('gpu')} x{data.get('gpu_count')}" if pod else None),
            ("image", data.get("image")),
            ("rate", f"{render.usd(data.get('cost_per_hr'))}/h" if pod else None),
            ("uptime", render.duration(data.get("uptime_s"))),
            ("resource", resource.id if resource else "not in the ledger"),
            ("ledger state", resource.state if resource else None),
            ("cost so far", render.usd(_cost(provider, resource))),
        ]
    )
    if note:
        render.info(f"note: {note}")


def _ledger_fields(provider: RunpodProvider, resource: Resource) -> dict[str, Any]:
    cost = _cost(provider, resource)
    return {
        "resource_id": resource.id,
        "managed": True,
        "ledger_state": resource.state,
        "cost_usd": None if cost is None else round(cost, 6),
    }


def _require_pod(pod_ref: str, pod_id: str | None, resource: Resource | None) -> str:
    from runctl.core.errors import NotFoundError

    if pod_id:
        return pod_id
    raise NotFoundError(
        f"no pod is known for {pod_ref}" + (f" (ledger state {resource.state})" if resource else ""),
        hint="'runctl runpod list' shows the pods; 'runctl resources reconcile' resolves intent rows",
    )


@app.command("status")
def status(pod_ref: PodArg, output: OutputOpt = OutputFormat.table) -> None:
    """Show one pod, and bring its ledger row up to date with what RunPod reports."""
    from runctl.core.errors import NotFoundError

    provider = _provider()
    resource, pod_id = _resolve(provider, pod_ref)
    if resource is not None:
        from runctl.workflows.reconcile import settle

        resource = settle(provider.lifecycle, provider, resource)
        pod_id = resource.cloud_id
    pod = provider.api.get_pod(pod_id) if pod_id else None
    if pod is None and resource is None:
        raise NotFoundError(
            f"RunPod has no pod {pod_ref}", hint="'runctl runpod list' shows the account's pods"
        )
    _show(provider, pod, resource, output)


@app.command("stop")
def stop(pod_ref: PodArg, output: OutputOpt = OutputFormat.table) -> None:
    """Stop a pod: its GPU is released and stops billing; its volume is kept."""
    provider = _provider()
    resource, pod_id = _resolve(provider, pod_ref)
    if resource is not None:
        resource = provider.stop(resource)
        pod_id = resource.cloud_id
    else:
        provider.api.stop_pod(_require_pod(pod_ref, pod_id, resource))
    _show(provider, provider.api.get_pod(_require_pod(pod_ref, pod_id, resource)), resource, output)


@app.command("resume")
def resume(
    pod_ref: PodArg,
    bid: Annotated[
        float | None,
        typer.Option(parser=BID, help="Bid per GPU-hour for an interruptible pod (default: its bid)."),
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Start a stopped pod again (podResume, or podBidResume for an interruptible pod)."""
    provider = _provider()
    resource, pod_id = _resolve(provider, pod_ref)
    if resource is not None:
        resource = provider.resume(resource, bid_per_gpu=bid)
        pod_id = resource.cloud_id
    else:
        pod_id = _require_pod(pod_ref, pod_id, resource)
        current = provider.api.get_pod(pod_id)
        provider.api.resume_pod(
            pod_id, gpu_count=(current.gpu_count if current else None) or 1, bid_per_gpu=bid
        )
    _show(provider, provider.api.get_pod(_require_pod(pod_ref, pod_id, resource)), resource, output)


@app.command("terminate")
def terminate(
    pod_ref: PodArg,
    force: Annotated[
        bool, typer.Option("--force", help="Also terminate a pod that runctl did not create.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Terminate a pod (its disks are deleted) and wait until RunPod confirms it is gone."""
    from runctl.core.errors import NotFoundError

    provider = _provider()
    resource, pod_id = _resolve(provider, pod_ref)
    started = time.monotonic()
    if resource is not None:
        resource = provider.lifecycle.release(resource)
        pod_id = resource.cloud_id
    else:
        if not force:
            raise NotFoundError(
                f"pod {pod_ref} is not in runctl's ledger: refusing to terminate it",
                hint="check the id ('runctl runpod list'); pass --force to terminate a pod that "
                "runctl did not create",
            )
        pod_id = _require_pod(pod_ref, pod_id, resource)
        if provider.api.get_pod(pod_id) is None:
            raise NotFoundError(f"RunPod has no pod {pod_id}", hint="'runctl runpod list' shows the pods")
        provider.terminate_pod(pod_id)
        provider.ledger.add_event("runpod.terminated_unmanaged", f"terminated pod {pod_id} (--force)")
    data: dict[str, Any] = {
        "id": pod_id,
        "status": "TERMINATED",
        "resource_id": resource.id if resource else None,
        "ledger_state": resource.state if resource else None,
        "cost_usd": None if resource is None else round(_cost(provider, resource) or 0.0, 6),
        "seconds": round(time.monotonic() - started, 3),
    }
    if output is OutputFormat.json:
        render.print_json(data)
    else:
        cost = f", cost {render.usd(data['cost_usd'])}" if resource else ""
        render.info(f"pod {pod_id} terminated (RunPod confirms it is gone){cost}")
