"""``runctl cost prices|report|estimate|budget``: what everything cost, will cost, may cost.

The work is in :mod:`runctl.core.cost` (billing rules, reports), :mod:`runctl.core.budget`
(estimates, limits) and :mod:`runctl.core.prices` (catalogues); these commands parse and render.
:func:`launch_check` is the plan line and budget check that ``aws create``, ``runpod create``
share (the ``train`` commands get theirs from :class:`runctl.workflows.remote.RemoteTrainer`).
"""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runctl.cli import render
from runctl.cli.options import BID, OutputOpt, duration_arg
from runctl.cli.render import OutputFormat
from runctl.cli.state import STATE

if TYPE_CHECKING:
    from runctl.core.budget import Estimate, Verdict
    from runctl.providers.base import LaunchPlan

app = typer.Typer(
    help="Cost: catalogue prices, reports of what was spent, estimates, budgets.", no_args_is_help=True
)

OverBudgetOpt = Annotated[
    bool,
    typer.Option(
        "--over-budget", help="Launch even when a [cost] budget or limit refuses it (exit 79 otherwise)."
    ),
]


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class By(StrEnum):
    job = "job"
    resource = "resource"
    provider = "provider"
    type = "type"
    day = "day"


class Provider(StrEnum):
    aws = "aws"
    runpod = "runpod"


def launch_check(
    plan: LaunchPlan,
    *,
    over_budget: bool,
    max_duration_s: float | None = None,
    dry_run: bool = False,
    quiet: bool = False,
) -> Verdict:
    """Show the launch's estimate on stderr and check it against ``[cost]``: raises
    BudgetError (exit 79) when refused, unless ``over_budget``; a dry run only reports."""
    from runctl.core import budget

    launch = budget.estimate(plan, max_duration_s=max_duration_s)
    limits = STATE.loaded().config.cost
    if not quiet:
        render.info(launch.line())
    if dry_run:
        verdict = budget.assess(STATE.ledger(), limits, launch)
    else:
        verdict = budget.guard_launch(STATE.ledger(), limits, launch, override=over_budget)
    if not quiet:
        for warning in verdict.warnings:
            render.info(f"warning: {warning}")
        for refusal in verdict.refusals:
            verb = "would be refused" if dry_run else f"launching over budget ({budget.OVERRIDE_FLAG})"
            render.info(f"budget: {verb}: {refusal}")
    return verdict


def precheck(over_budget: bool) -> None:
    """Refuse before any request when a budget is already used up (BudgetError, exit 79)."""
    from runctl.core import budget

    budget.guard_launch(STATE.ledger(), STATE.loaded().config.cost, override=over_budget)


# -- prices ------------------------------------------------------------------------------------


@app.command("prices")
def prices_(
    provider: Annotated[Provider | None, typer.Option("--provider", help="Only aws or runpod.")] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Only this AWS region or RunPod cloud (secure, community)."),
    ] = None,
    item: Annotated[
        str | None, typer.Option("--type", help="Only items containing this (e.g. g5, H100).")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Ask the live APIs first (AWS Price List for the region's catalogue types, "
            "RunPod gpuTypes) and cache the answers in the state dir.",
        ),
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show catalogue prices with their date and age; stale ones are marked."""
    from runctl.core import prices

    config = STATE.loaded().config
    if refresh:
        _refresh(provider, region, item)
    stale_days = config.cost.price_stale_days
    now = time.time()
    rows = [
        e
        for p in ([provider.value] if provider else list(prices.CATALOGUE_FILES))
        for e in prices.entries(p)
        if (region is None or e.group == region) and (item is None or item.lower() in e.item.lower())
    ]
    stale = [e for e in rows if e.is_stale(stale_days, now)]
    if stale:
        oldest = max(e.age_days(now) for e in stale)
        render.info(
            f"warning: {len(stale)} of {len(rows)} prices are older than [cost] price_stale_days "
            f"({stale_days} days; the oldest {oldest:.0f} days): refresh with 'runctl cost prices "
            "--refresh' (or regenerate the catalogue)"
        )
    if output is OutputFormat.json:
        render.print_json(
            {"stale_days": stale_days, "prices": [e.to_dict(stale_days=stale_days, now=now) for e in rows]}
        )
        return
    render.table(
        None,
        ["PROVIDER", "REGION/CLOUD", "ITEM", "PRICE", "UNIT", "AS OF", "AGE", "FROM", "SOURCE"],
        [
            (
                e.provider,
                e.group,
                e.item,
                f"{e.usd:g}",
                e.unit,
                e.as_of,
                f"{e.age_days(now):.0f}d" + (" STALE" if e.is_stale(stale_days, now) else ""),
                e.origin,
                e.source,
            )
            for e in rows
        ],
    )


def _refresh(provider: Provider | None, region: str | None, item: str | None) -> None:
    """Refresh each asked provider; one failing is reported, all failing is an error."""
    from runctl.core.errors import RunctlError

    wanted = [provider] if provider else list(Provider)
    failures: list[RunctlError] = []
    for name in wanted:
        try:
            count, where = _refresh_aws(region, item) if name is Provider.aws else _refresh_runpod()
            render.info(f"{name.value}: refreshed {count} prices ({where}), cached in the state dir")
        except RunctlError as exc:
            failures.append(exc)
            render.info(f"{name.value}: refresh failed: {exc}")
    if failures and len(failures) == len(wanted):
        raise failures[0]


def _refresh_aws(region: str | None, item: str | None) -> tuple[int, str]:
    """The Price List API for the catalogue's instance types (those matching ``item``)."""
    from runctl.core import prices
    from runctl.core.retry import RetryPolicy
    from runctl.providers.aws import pricing
    from runctl.providers.aws.context import AwsContext

    config = STATE.loaded().config
    region = region or AwsContext(config.aws).region
    types = sorted(
        {
            e.item
            for e in prices.entries("aws")
            if e.section == pricing.ON_DEMAND and (item is None or item.lower() in e.item.lower())
        }
    )
    policy = RetryPolicy.for_cloud_api("AWS Price List", config.retry)
    found = pricing.fetch_on_demand(types, region, policy=policy)
    if found:
        prices.store("aws", pricing.ON_DEMAND, {region: found})
    return len(found), f"AWS Price List, {region}"


def _refresh_runpod() -> tuple[int, str]:
    from runctl.core import prices
    from runctl.core.errors import AuthError
    from runctl.providers.runpod import pricing
    from runctl.providers.runpod.provider import RunpodProvider

    provider = RunpodProvider.from_config(STATE.ledger(), STATE.loaded().config)
    if not provider.has_credentials:
        raise AuthError(
            "no RunPod API key to ask gpuTypes with",
            hint="set RUNPOD_API_KEY, or refresh only AWS with --provider aws",
        )
    table = pricing.refreshed_entries(provider.api.gpu_types(1))
    prices.store("runpod", pricing.SECTION, table)
    return sum(len(items) for items in table.values()), "RunPod gpuTypes"


# -- report ------------------------------------------------------------------------------------


def parse_when(option: str, value: str | None, *, now: float) -> float | None:
    """A point in time: ``YYYY-MM-DD`` (midnight UTC), an ISO date-time (UTC unless it says),
    ``today``, or a duration ago (``7d``, ``12h``)."""
    if value is None:
        return None
    from datetime import UTC, datetime

    from runctl.core.config import parse_duration
    from runctl.core.errors import UsageError

    text = value.strip()
    if text == "today":
        return now - now % 86400
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text)
        except ValueError:
            raise UsageError(
                f"{option} {value!r} is not a date",
                hint=f"e.g. {option} 2026-11-01, {option} 2026-11-01T12:00, {option} 7d (7 days ago), "
                f"{option} today",
            ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@app.command("report")
def report(
    by: Annotated[
        By, typer.Option("--by", help="Group by job, resource, provider, type or day (UTC).")
    ] = By.job,
    since: Annotated[
        str | None, typer.Option("--since", help="From (YYYY-MM-DD, ISO time, 'today', or 7d ago).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Until (exclusive; default: now).")] = None,
    provider: Annotated[Provider | None, typer.Option("--provider", help="Only aws or runpod.")] = None,
    output: Annotated[
        ReportFormat, typer.Option("--output", "-o", help="table, json (stable keys) or csv.")
    ] = ReportFormat.table,
) -> None:
    """What was spent, from the ledger, under each provider's billing rules."""
    from runctl.core import cost
    from runctl.core.errors import UsageError

    now = time.time()
    start, end = parse_when("--since", since, now=now), parse_when("--until", until, now=now)
    if start is not None and end is not None and end <= start:
        raise UsageError("--until must be after --since", hint="e.g. --since 2026-11-01 --until 2026-11-08")
    result = cost.report(
        STATE.ledger(),
        by=by.value,
        since=start,
        until=end,
        provider=provider.value if provider else None,
        now=now,
    )
    if output is ReportFormat.json:
        render.print_json(result.to_dict())
        return
    for note in result.notes:
        render.info(f"note: {note}")
    if output is ReportFormat.csv:
        sys.stdout.write(result.to_csv())
        return
    render.table(
        None,
        [by.value.upper(), "LABEL", "HOURS", "COST", "NOW $/H", "RESOURCES"],
        [
            (
                r.key,
                r.label,
                f"{r.hours:.2f}",
                render.usd(r.cost_usd),
                render.usd(r.usd_per_hour_now) if r.usd_per_hour_now else "",
                len(r.resources),
            )
            for r in result.rows
        ],
    )
    window = f"since {render.when(start)} " if start is not None else ""
    typer.echo(f"total {render.usd(result.total_usd)} {window}until {render.when(result.until)}")


# -- estimate ----------------------------------------------------------------------------------


@app.command("estimate")
def estimate(
    provider: Annotated[Provider, typer.Argument(help="aws or runpod.")],
    instance_type: Annotated[
        str | None,
        typer.Option("--instance-type", "-t", help="AWS: EC2 type (default: aws.default_instance_type)."),
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="AWS: region (default: [aws] region).")
    ] = None,
    az: Annotated[str | None, typer.Option("--az", help="AWS: only this zone.")] = None,
    gpu: Annotated[
        list[str] | None, typer.Option("--gpu", help="RunPod: GPU type (default: runpod.default_gpu).")
    ] = None,
    gpu_count: Annotated[int | None, typer.Option(min=1, help="RunPod: GPUs per pod.")] = None,
    cloud: Annotated[str | None, typer.Option(help="RunPod: secure, community or all.")] = None,
    bid: Annotated[
        float | None, typer.Option(parser=BID, help="RunPod: bid per GPU-hour (implies --spot).")
    ] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="Market.", show_default=False)
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Machines.")] = 1,
    max_duration: Annotated[
        str | None, typer.Option(help="How long it may run (e.g. 10h): gives the worst-case total.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="From the price catalogue only: no API call, no credentials.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The launch plan priced: $/h, the worst case with --max-duration, and the budget checks."""
    from dataclasses import replace

    from runctl.core import budget

    config = STATE.loaded().config
    seconds = duration_arg("--max-duration", max_duration)
    if provider is Provider.aws:
        from runctl.providers.aws.provider import AwsProvider

        aws = AwsProvider(STATE.ledger(), config, region=region, progress=None)
        spec = replace(aws.machine_spec(instance_type, spot=spot, zone=az), count=count)
        if offline:
            launch = budget.catalogue_estimate(
                "aws",
                spec,
                region=aws.ctx.region,
                max_duration_s=seconds,
                stale_days=config.cost.price_stale_days,
            )
        else:
            launch = budget.estimate(aws.plan(spec), max_duration_s=seconds)
    else:
        from runctl.cli.runpod_cmd import pod_spec
        from runctl.providers.runpod.provider import RunpodProvider

        rp = config.runpod
        spec = replace(
            pod_spec(
                rp, gpu=gpu, gpu_count=gpu_count, cloud=cloud, disk=None, volume=None, image=None,
                spot=bool(spot), bid=bid, name=None,
            ),
            count=count,
        )  # fmt: skip
        if offline:
            gpu_name = (spec.extra.get("gpu_types") or [rp.default_gpu])[0]
            chosen = str(spec.extra.get("cloud") or rp.cloud_type)
            launch = budget.catalogue_estimate(
                "runpod",
                replace(spec, gpu_type=gpu_name),
                cloud="secure" if chosen == "all" else chosen,
                max_duration_s=seconds,
                stale_days=config.cost.price_stale_days,
            )
        else:
            plan = RunpodProvider.from_config(STATE.ledger(), config).plan(spec)
            launch = budget.estimate(plan, max_duration_s=seconds)
    verdict = budget.assess(STATE.ledger(), config.cost, launch)
    _show_estimate(launch, verdict, output)


def _show_estimate(launch: Estimate, verdict: Verdict, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        render.print_json(
            {
                **launch.to_dict(),
                "budget": {
                    "allowed": verdict.allowed,
                    "refusals": verdict.refusals,
                    "warnings": verdict.warnings,
                    "figures": {k: v for k, v in verdict.figures.items() if k != "launch"},
                },
            }
        )
        return
    from runctl.core.budget import per_hour

    rate = launch.usd_per_hour
    render.fields(
        [
            ("launch", launch.what),
            ("rate", per_hour(rate) if rate is not None else "unknown"),
            ("max duration", render.duration(launch.max_duration_s) if launch.max_duration_s else "not set"),
            (
                "worst case",
                render.usd(launch.worst_case_usd) if launch.worst_case_usd is not None else "unbounded",
            ),
            ("billing minimum", f"{launch.minimum_s:g} s" if launch.minimum_s else "none (per second)"),
            ("budget", "ok" if verdict.allowed else "would be refused (--over-budget to launch anyway)"),
        ]
    )
    for refusal in verdict.refusals:
        typer.echo(f"refused: {refusal}")
    for warning in verdict.warnings:
        typer.echo(f"warning: {warning}")
    for note in launch.notes:
        typer.echo(f"note: {note}")


# -- budget ------------------------------------------------------------------------------------


@app.command("budget")
def budget_(output: OutputOpt = OutputFormat.table) -> None:
    """Where the [cost] limits stand: spent this period, the running rate, running jobs' costs."""
    from runctl.core import budget, cost

    ledger = STATE.ledger()
    limits = STATE.loaded().config.cost
    figures: dict[str, Any] = budget.status(ledger, limits)
    figures["running_jobs"] = [
        {
            "id": job.id,
            "name": job.name,
            "provider": job.provider,
            "cost_usd": round(cost.job_cost(ledger, job.id), 6),
        }
        for job in ledger.list_jobs(states=("pending", "running"))
    ]
    if output is OutputFormat.json:
        render.print_json(figures)
        return

    def against(value: float, limit: float | None, unit: str = "") -> str:
        shown = f"{render.usd(value)}{unit}"
        return shown if limit is None else f"{shown} of {render.usd(limit)}{unit} ({value / limit:.0%})"

    render.fields(
        [
            (f"spent this {figures['period']}", against(figures["spent_usd"], limits.budget_usd)),
            ("since", figures["period_start"]),
            ("running now", against(figures["running_usd_per_hour"], limits.max_hourly_usd, "/h")),
            ("per-job limit", render.usd(limits.max_cost_usd) or "not set"),
            ("warn at", f"{limits.warn_at:.0%}"),
        ]
    )
    for job in figures["running_jobs"]:
        spent = against(job["cost_usd"], limits.max_cost_usd)
        typer.echo(f"job {job['id']} ({job['name']}, {job['provider']}): {spent}")
