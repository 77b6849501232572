"""``aws create`` and ``runpod create``: one machine-creating command over the launch path.

Both parse their provider's options into :class:`~runctl.providers.base.LaunchOptions`, then
call :func:`create`, which runs :mod:`runctl.workflows.launch` and renders what came of it from
the plan's own summary and the ledger's rows: nothing here reads a provider's private fields.
Progress and the estimate go to stderr; ``--output json`` or ``id`` keeps stdout to the result.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.core.ledger import Resource
    from runctl.providers.base import LaunchOptions, Machine


class CreateOutput(StrEnum):
    table = "table"
    json = "json"
    id = "id"


CreateOutputOpt = Annotated[
    CreateOutput, typer.Option("--output", "-o", help="table, json, or id (just the cloud id).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the priced plan; create nothing.")]


def machine_dict(machine: Machine, resource: Resource) -> dict[str, Any]:
    """A created machine as ``--output json`` prints it: its cloud id and its ledger row."""
    return {
        "id": machine.cloud_id,
        "resource_id": resource.id,
        "provider": resource.provider,
        "kind": resource.kind,
        "state": resource.state,
        "zone": machine.zone or resource.zone,
        "address": machine.address,
        "rate_usd_per_hour": resource.rate_usd_per_hour,
        "spec": resource.spec,
    }


def create(
    provider_name: str,
    options: LaunchOptions,
    *,
    over_budget: bool,
    dry_run: bool,
    output: CreateOutput,
    allow_over_limit: bool = False,
    wait: bool = False,
) -> None:
    """Precheck, plan, verdict, apply (:mod:`runctl.workflows.launch`), then render."""
    from runctl.providers import registry
    from runctl.workflows import launch

    quiet = output is not CreateOutput.table
    ledger, config = STATE.ledger(), STATE.loaded().config
    provider = registry.compute(provider_name, ledger, config, progress=None if quiet else render.info)
    spec = provider.spec(options)
    say = (lambda _text: None) if quiet else render.info
    prepared = launch.prepare(
        provider, spec, ledger, config, over_budget=over_budget, dry_run=dry_run, say=say
    )
    plan = prepared.plan
    rate = f"{render.usd(plan.rate_usd_per_hour)}/h" if plan.rate_usd_per_hour is not None else "unknown rate"
    if dry_run:
        if output is CreateOutput.json:
            render.print_json(prepared.to_dict())
            return
        typer.echo(f"plan: {plan.what}, {rate}; tries {', '.join(plan.tries)}")
        for note in plan.notes:
            typer.echo(f"note: {note}")
        return
    say(f"creating {plan.what}, {plan.tries[0] if plan.tries else ''} first, at about {rate} …")
    for note in plan.notes:
        say(f"note: {note}")
    machines = launch.apply(prepared, allow_over_limit=allow_over_limit, wait=wait)
    rows = [ledger.get_resource(m.resource_id) for m in machines]
    if output is CreateOutput.id:
        typer.echo("\n".join(m.cloud_id for m in machines))
        return
    created = [machine_dict(m, r) for m, r in zip(machines, rows, strict=True)]
    if output is CreateOutput.json:
        render.print_json({**created[0], "plan": prepared.to_dict()} if len(created) == 1 else created)
        return
    for data in created:
        render.fields(
            [
                ("machine", data["id"]),
                ("resource", data["resource_id"]),
                ("launch", plan.what),
                ("state", data["state"]),
                ("zone", data["zone"]),
                ("rate", f"{render.usd(data['rate_usd_per_hour'])}/h"),
                ("address", data["address"]),
            ]
        )
