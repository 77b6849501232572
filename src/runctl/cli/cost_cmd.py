"""``runctl cost prices|report|estimate|budget``: what everything cost, will cost, may cost.

The work is in :mod:`runctl.core.cost` (billing rules, reports), :mod:`runctl.core.budget`
(limits), :mod:`runctl.core.prices` (catalogues) and :mod:`runctl.workflows.launch` (``estimate``
is the launch path stopped after its verdict); these commands parse and render.
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

app = typer.Typer(
    help="Cost: catalogue prices, reports of what was spent, estimates, budgets.", no_args_is_help=True
)


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
        for p in ([provider.value] if provider else list(prices.catalogue_files()))
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
    from runctl.providers import registry

    wanted = [provider] if provider else list(Provider)
    failures: list[RunctlError] = []
    for name in wanted:
        try:
            chosen = registry.compute(name.value, STATE.ledger(), STATE.loaded().config)
            count, where = chosen.refresh_prices(region=region, item=item)
            render.info(f"{name.value}: refreshed {count} prices ({where}), cached in the state dir")
        except RunctlError as exc:
            failures.append(exc)
            render.info(f"{name.value}: refresh failed: {exc}")
    if failures and len(failures) == len(wanted):
        raise failures[0]


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
    from runctl.core import budget
    from runctl.providers import registry
    from runctl.providers.base import LaunchOptions
    from runctl.workflows import launch

    config = STATE.loaded().config
    if region is not None:  # AWS: price another region than the configured one
        config = config.model_copy(update={"aws": config.aws.model_copy(update={"region": region})})
    seconds = duration_arg("--max-duration", max_duration)
    ledger = STATE.ledger()
    chosen = registry.compute(provider.value, ledger, config)
    options = LaunchOptions(
        instance_type=instance_type,
        gpus=gpu or (),
        gpu_count=gpu_count,
        zone=az if provider is Provider.aws else cloud,
        spot=spot,
        max_price=bid,
        count=count,
    )
    spec = chosen.spec(options)
    if offline:
        estimate_ = launch.offline_estimate(chosen, spec, config, max_duration_s=seconds)
        verdict = budget.assess(ledger, config.cost, estimate_)
    else:
        prepared = launch.prepare(chosen, spec, ledger, config, max_duration_s=seconds, dry_run=True)
        estimate_, verdict = prepared.estimate, prepared.verdict
    _show_estimate(estimate_, verdict, output)


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
    rate = launch.usd_per_hour
    render.fields(
        [
            ("launch", launch.what),
            ("rate", render.usd(rate, per_hour=True) if rate is not None else "unknown"),
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
