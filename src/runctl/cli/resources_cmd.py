"""``runctl resources list|summary|reconcile|cleanup``: everything runctl created.

``list`` and ``summary`` read the ledger only (no cloud call). ``reconcile`` and ``cleanup``
ask the providers that can list what they made (AWS by tag, RunPod by pod name); see
:mod:`runctl.workflows.reconcile` for what they do and never do. A provider is asked when it is
configured (AWS: a region; RunPod: an API key) or when the ledger has resources of it (then a
missing setting is an error, not a silent skip: those resources may be billing).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import OutputOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.core.lifecycle import Lifecycle
    from runctl.providers.base import ComputeProvider

app = typer.Typer(
    help="Everything runctl created: list, summarize, reconcile with the clouds, clean up.",
    no_args_is_help=True,
)

ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="Only this provider (aws, runpod, local).")
]
IntentGraceOpt = Annotated[
    str | None,
    typer.Option(
        "--intent-grace",
        help="Leave 'intent' rows younger than this alone: their create may still be running "
        "(default 10m; 0 right after a crash, when nothing else is creating).",
    ),
]


def _discoverable(only: str | None) -> dict[str, ComputeProvider]:
    """The cloud providers reconcile/cleanup ask: each one that is configured or that the ledger
    has resources of (a provider with neither is skipped, and says so)."""
    from runctl.core.errors import ConfigError, UsageError
    from runctl.providers import registry

    if only is not None and only not in registry.names():
        raise UsageError(
            f"--provider {only}: reconcile and cleanup support {', '.join(registry.names())}",
            hint="leave out --provider to ask every configured provider",
        )
    ledger = STATE.ledger()
    config = STATE.loaded().config
    providers: dict[str, ComputeProvider] = {}
    for name in [only] if only else registry.names():
        needed = only is not None or bool(ledger.list_resources(provider=name))
        try:
            provider = registry.compute(name, ledger, config, progress=render.info)
            if provider.configured() or needed:
                providers[name] = provider
                continue
        except ConfigError:
            if needed:
                raise
        render.info(f"{name} is not configured and the ledger has no {name} resources: skipped")
    return providers


def _grace(value: str | None) -> float:
    """``--intent-grace``: a duration, or 0 (durations elsewhere must be positive)."""
    import re

    from runctl.providers.base import INTENT_GRACE_S

    if value is not None and re.fullmatch(r"\s*0+(?:\.0*)?\s*(?:ms|s|m|h|d)?\s*", value):
        return 0.0
    return duration_arg("--intent-grace", value) or INTENT_GRACE_S


def _lifecycle(providers: dict[str, ComputeProvider]) -> Lifecycle:
    from runctl.core.lifecycle import Lifecycle as Built

    return Built(STATE.ledger(), providers)


def _resource_row(resource: Any, cost: float) -> dict[str, Any]:
    return {**resource.to_dict(), "cost_usd": round(cost, 6)}


@app.command("list")
def list_(
    provider: ProviderOpt = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include terminated/deleted ones.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the resources in the ledger (live ones by default), with their cost so far."""
    from runctl.core.cost import resource_cost

    ledger = STATE.ledger()
    rows = [
        _resource_row(r, resource_cost(ledger, r.id))
        for r in ledger.list_resources(provider=provider, include_gone=all_)
    ]
    if output is OutputFormat.json:
        render.print_json(rows)
        return
    render.table(
        None,
        ["ID", "PROVIDER", "KIND", "CLOUD ID", "STATE", "ZONE", "RATE/H", "COST", "JOB", "CREATED", "KEEP"],
        [
            (
                r["id"],
                r["provider"],
                r["kind"],
                r["cloud_id"],
                r["state"],
                r["zone"],
                render.usd(r["rate_usd_per_hour"]),
                render.usd(r["cost_usd"]),
                r["job_id"],
                render.when(r["created_at"]),
                "persistent" if r["persistent"] else "",
            )
            for r in rows
        ],
    )


@app.command("summary")
def summary(provider: ProviderOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Live resources by provider, kind and state: how many, what they cost per hour, so far."""
    from runctl.core.cost import resource_cost

    ledger = STATE.ledger()
    groups: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "usd_per_hour": 0.0, "cost_usd": 0.0}
    )
    for resource in ledger.list_resources(provider=provider, include_gone=False):
        intervals = ledger.usage(resource_id=resource.id)
        group = groups[(resource.provider, resource.kind, resource.state)]
        group["count"] += 1
        group["usd_per_hour"] += sum(i.rate_usd_per_hour for i in intervals if i.ended_at is None)
        group["cost_usd"] += resource_cost(ledger, resource.id)
    rows = [
        {"provider": p, "kind": k, "state": s, **{key: round(v, 6) for key, v in g.items()}}
        for (p, k, s), g in sorted(groups.items())
    ]
    totals = {
        "live": sum(r["count"] for r in rows),
        "usd_per_hour": round(sum(r["usd_per_hour"] for r in rows), 6),
        "cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
    }
    if output is OutputFormat.json:
        render.print_json({**totals, "groups": rows})
        return
    render.table(
        None,
        ["PROVIDER", "KIND", "STATE", "COUNT", "RATE/H", "COST"],
        [
            (
                r["provider"],
                r["kind"],
                r["state"],
                r["count"],
                render.usd(r["usd_per_hour"]),
                render.usd(r["cost_usd"]),
            )
            for r in rows
        ],
    )
    render.console().print(
        f"{totals['live']} live resource(s), {render.usd(totals['usd_per_hour'])}/h now, "
        f"{render.usd(totals['cost_usd'])} so far"
    )


@app.command("reconcile")
def reconcile(
    apply: Annotated[
        bool, typer.Option("--apply", help="Fix the ledger (default: only show the plan).")
    ] = False,
    provider: ProviderOpt = None,
    intent_grace: IntentGraceOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Compare the ledger with the clouds both ways; with --apply, make the ledger true."""
    from runctl.core.identity import current_user
    from runctl.workflows.reconcile import apply_reconcile, plan_reconcile

    grace = _grace(intent_grace)
    providers = _discoverable(provider)
    actions = plan_reconcile(STATE.ledger(), providers, user=current_user(), intent_grace_s=grace)
    fixes = [a for a in actions if a.action not in ("foreign", "in_flight")]
    if apply and fixes:
        apply_reconcile(_lifecycle(providers), providers, fixes)
    if output is OutputFormat.json:
        render.print_json({"applied": apply, "actions": [a.to_dict() for a in actions]})
        return
    if not actions:
        render.console().print("the ledger and the cloud agree")
        return
    render.table(
        None,
        ["ACTION", "PROVIDER", "KIND", "RESOURCE", "CLOUD ID", "LEDGER", "CLOUD", "WHY"],
        [
            (a.action, a.provider, a.kind, a.resource_id, a.cloud_id, a.from_state, a.to_state, a.detail)
            for a in actions
        ],
    )
    if apply:
        render.console().print(f"applied {len(fixes)} change(s) to the ledger")
    elif fixes:
        render.console().print(f"{len(fixes)} change(s) needed: run again with --apply to make them")


@app.command("cleanup")
def cleanup(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only resources created longer ago than this (e.g. 2h, 1d)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be released; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    provider: ProviderOpt = None,
    intent_grace: IntentGraceOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Release runctl's live resources (never persistent or runctl:protect=true ones), verified.

    Acts on the ledger: run 'runctl resources reconcile --apply' first to include resources
    the ledger lacks.
    """
    from runctl.core.errors import ResourceError, UsageError
    from runctl.workflows.reconcile import plan_cleanup, run_cleanup

    age = duration_arg("--older-than", older_than)
    grace = _grace(intent_grace)
    providers = _discoverable(provider)
    items = plan_cleanup(STATE.ledger(), providers, older_than=age, now=time.time(), intent_grace_s=grace)
    releasing = [i for i in items if i.action == "release"]
    if not dry_run and releasing and not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"cleanup would release {len(releasing)} resource(s); refusing without confirmation",
                hint="add --yes, or --dry-run to see them first",
            )
        _show_cleanup(items, OutputFormat.table)
        if not typer.confirm(f"release {len(releasing)} resource(s)?"):
            raise typer.Abort()
    if not dry_run and releasing:
        items = run_cleanup(_lifecycle(providers), items)
    _show_cleanup(items, output, dry_run=dry_run)
    failed = [i for i in items if i.action == "failed"]
    if failed:
        raise ResourceError(
            f"could not release {len(failed)} resource(s): "
            + "; ".join(f"{i.resource.id} ({i.resource.cloud_id}): {i.outcome}" for i in failed),
            operation="cleanup",
            hint="they stay recorded as live; retry, or check the provider's console",
        )


def _show_cleanup(items: list[Any], output: OutputFormat, *, dry_run: bool = False) -> None:
    if output is OutputFormat.json:
        render.print_json({"dry_run": dry_run, "items": [i.to_dict() for i in items]})
        return
    if not items:
        render.console().print("nothing to clean up")
        return
    render.table(
        "dry run: nothing changed" if dry_run else None,
        ["ACTION", "RESOURCE", "PROVIDER", "KIND", "CLOUD ID", "STATE", "CREATED", "WHY", "OUTCOME"],
        [
            (
                "would release" if dry_run and i.action == "release" else i.action,
                i.resource.id,
                i.resource.provider,
                i.resource.kind,
                i.resource.cloud_id,
                i.resource.state,
                render.when(i.resource.created_at),
                i.reason,
                i.outcome,
            )
            for i in items
        ],
    )
