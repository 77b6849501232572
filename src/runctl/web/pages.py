"""The dashboard's HTML, rendered on the server from the views in
:mod:`runctl.workflows.dashboard`.

Every value that came from the ledger, a log or a user (job names, log lines, event messages,
error text) goes through :func:`html.escape` on its way into a page: a job named
``<script>…`` is shown, never run. Only the markup written here is trusted (:class:`Html`).
Pages carry no inline script or style (the Content-Security-Policy forbids both); the live
parts are ``<div data-live="/live/…">`` regions that ``/static/dashboard.js`` refills from
server-sent events with fragments rendered by the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from runctl.core.units import duration, usd
from runctl.web import svg
from runctl.workflows.dashboard import JobView, MoneyView, NowView, ReliabilityView, machine_of

PAGES = (("now", "Now"), ("money", "Money"), ("reliability", "Reliability"))


class Html(str):
    """Markup written by this module: inserted as is (everything else is escaped)."""


def text(value: object) -> str:
    """``value`` as escaped page text (``-`` for None)."""
    if isinstance(value, Html):
        return value
    return escape("-" if value is None else str(value))


def when(ts: float | None) -> str:
    """A UTC time as people read it."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str = "") -> Html:
    """An HTML table; every cell escaped unless it is :class:`Html`."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">none</td></tr>'
    return Html(f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def layout(title: str, body: str, *, active: str) -> Html:
    """The page around ``body``: navigation, stylesheet, script; nothing from a CDN."""
    nav = "".join(
        f'<a href="/{key}"{" class=active" if key == active else ""}>{label}</a>' for key, label in PAGES
    )
    return Html(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · runctl</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>'
        f'<body><header><strong>runctl</strong><nav>{nav}</nav></header><main>{body}</main></body></html>'
    )


def job_link(job_id: str, label: str | None = None) -> Html:
    return Html(f'<a href="/jobs/{escape(job_id)}">{escape(label or job_id)}</a>')


def action_form(action: str, label: str, csrf: str, *, confirm: str) -> Html:
    """A POST button for one of the two actions, with its CSRF token."""
    return Html(
        f'<form method="post" action="{escape(action)}" data-confirm="{escape(confirm)}" class="inline">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def chart_block(chart: str, legend_names: Sequence[str], api: str, data_table: Html) -> Html:
    """A chart, its legend, the same numbers as a table, and where the JSON is."""
    return Html(
        f'<figure>{chart}{svg.legend(legend_names)}</figure>{data_table}'
        f'<p class="api">JSON: <a href="{escape(api)}">{escape(api)}</a></p>'
    )


# -- Now ---------------------------------------------------------------------------------------


def now_page(view: NowView, csrf: str) -> Html:
    body = f'<h1>Now</h1><div data-live="/live/now">{now_fragment(view, csrf)}</div>'
    return layout("Now", body, active="now")


def now_fragment(view: NowView, csrf: str) -> Html:
    """The live part of the Now page (re-sent over server-sent events)."""
    parts: list[str] = []
    problems = view.unaccounted
    if problems:
        parts.append('<section class="alert"><h2>Unaccounted for</h2>')
        parts.append(
            table(
                ["resource", "provider", "kind", "cloud id", "state", "job", "why", "cost so far", ""],
                [
                    (
                        r.resource.id,
                        r.resource.provider,
                        r.resource.kind,
                        r.resource.cloud_id,
                        r.resource.state,
                        job_link(r.resource.job_id) if r.resource.job_id else None,
                        r.problem,
                        usd(r.cost_usd),
                        action_form(
                            f"/resources/{r.resource.id}/release",
                            "release",
                            csrf,
                            confirm=f"Release {r.resource.id} ({r.resource.cloud_id})?",
                        )
                        if r.releasable
                        else Html(""),
                    )
                    for r in problems
                ],
                cls="problems",
            )
        )
        parts.append("</section>")
    rate = sum(r.rate_usd_per_hour for r in view.resources)
    parts.append(
        f'<p class="summary">{len(view.jobs)} job(s) running · '
        f'<span id="rate">{escape(usd(rate, per_hour=True))}</span> now · '
        f"as of {escape(when(view.taken_at))}</p>"
    )
    parts.append("<h2>Running jobs</h2>")
    parts.append(
        table(
            [
                "job", "name", "owner", "project", "provider", "state", "machine", "attempt",
                "heartbeat", "cost so far", "$/h", "",
            ],
            [
                (
                    job_link(j.id),
                    j.name,
                    j.owner,
                    j.project,
                    j.provider,
                    Html(f'<span class="state {escape(j.state)}">{escape(j.state)}</span>'),
                    j.machine,
                    j.attempt,
                    None if j.heartbeat_age_s is None else f"{duration(j.heartbeat_age_s)} ago",
                    Html(f'<span class="cost" data-usd="{j.cost_usd:.6f}">{escape(usd(j.cost_usd))}</span>'),
                    usd(j.rate_usd_per_hour, per_hour=True),
                    action_form(f"/jobs/{j.id}/cancel", "cancel", csrf, confirm=f"Cancel job {j.id}?")
                    if j.provider == "local"
                    else Html(""),
                )
                for j in view.jobs
            ],
            cls="jobs",
        )
    )
    parts.append("<h2>Live resources</h2>")
    parts.append(
        table(
            ["resource", "provider", "kind", "machine", "state", "zone", "job", "cost so far", "$/h"],
            [
                (
                    r.resource.id,
                    r.resource.provider,
                    r.resource.kind,
                    machine_of(r.resource),
                    r.resource.state,
                    r.resource.zone,
                    job_link(r.resource.job_id) if r.resource.job_id else None,
                    usd(r.cost_usd),
                    usd(r.rate_usd_per_hour, per_hour=True),
                )
                for r in view.resources
            ],
            cls="resources",
        )
    )
    return Html("".join(parts))


# -- Job ---------------------------------------------------------------------------------------


def job_page(view: JobView, csrf: str) -> Html:
    job = view.job
    body = [f"<h1>Job {escape(job.id)} <small>{escape(job.name)}</small></h1>"]
    body.append(f'<div data-live="/live/jobs/{escape(job.id)}">{job_fragment(view, csrf)}</div>')
    return layout(f"Job {job.id}", "".join(body), active="")


def job_fragment(view: JobView, csrf: str) -> Html:
    """The live part of the Job page: state, cost, attempts, timeline, checkpoints, log tail."""
    job = view.job
    cancel = (
        action_form(f"/jobs/{job.id}/cancel", "cancel", csrf, confirm=f"Cancel job {job.id}?")
        if not job.is_final and job.provider == "local"
        else ""
    )
    parts = [
        f'<p class="summary">state <span class="state {escape(job.state)}" id="job-state">'
        f"{escape(job.state)}</span> · owner {text(view.owner)} · project {text(view.project)} · "
        f"{escape(job.provider)} · attempt {job.attempt} · cost {escape(usd(view.cost_usd))} · "
        f"{escape(usd(view.rate_usd_per_hour, per_hour=True))} now {cancel}</p>",
    ]
    if job.detail:
        parts.append(f'<p class="detail">{escape(job.detail)}</p>')
    parts.append("<h2>Attempts</h2>")
    parts.append(timeline_svg(view))
    parts.append(
        table(
            ["attempt", "machine", "market", "zone", "started", "ended", "outcome", "cost"],
            [
                (a.number, a.machine, a.market, a.zone, when(a.started_at), when(a.ended_at), a.outcome,
                 usd(a.cost_usd))
                for a in view.attempts
            ],
        )
    )
    parts.append("<h2>Timeline</h2>")
    events = [(when(e.ts), e.kind, e.message) for e in view.timeline]
    parts.append(table(["time", "event", "message"], events))
    parts.append("<h2>Checkpoints</h2>")
    parts.append(
        table(
            ["checkpoint", "step", "bytes", "written"],
            [(c.path.name, c.step, c.size, when(c.mtime)) for c in view.checkpoints],
        )
    )
    if not view.checkpoints and job.last_checkpoint:
        parts.append(f"<p>last checkpoint: {escape(job.last_checkpoint)}</p>")
    parts.append("<h2>Log</h2>")
    if view.log_tail is None:
        parts.append(f"<p>no log on this machine: <code>runctl logs {escape(job.id)}</code> reads it</p>")
    else:
        parts.append(f'<pre class="log" id="log">{escape(view.log_tail)}</pre>')
    return Html("".join(parts))


def timeline_svg(view: JobView) -> str:
    """Attempts as bars on one time axis, coloured by outcome; events as ticks."""
    spans = [(a.started_at, a.ended_at or view_now(view)) for a in view.attempts if a.started_at]
    if not spans:
        return ""
    start = min(s for s, _ in spans)
    end = max(max(e for _, e in spans), start + 1)
    width, row = 760, 22
    scale = (width - 140) / (end - start)
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {row * len(spans) + 10}" width="100%" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="attempts over time">'
    ]
    outcome_colour = {"preempted": "#D55E00", "failed": "#CC79A7", "succeeded": "#009E73"}
    for i, attempt in enumerate(a for a in view.attempts if a.started_at):
        s, e = attempt.started_at or start, attempt.ended_at or view_now(view)
        x = 130 + (s - start) * scale
        parts.append(
            f'<text x="4" y="{i * row + 16}" font-size="11" fill="#444">attempt {attempt.number}</text>'
            f'<rect x="{x:.1f}" y="{i * row + 4}" width="{max(2.0, (e - s) * scale):.1f}" height="14" '
            f'fill="{outcome_colour.get(attempt.outcome, "#0072B2")}"><title>attempt {attempt.number} on '
            f"{escape(attempt.machine or '-')} ({escape(attempt.market or '-')}): {escape(attempt.outcome)}"
            "</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def view_now(view: JobView) -> float:
    """Where a running attempt's bar ends: the job's end, else when the view was taken."""
    return view.job.ended_at or view.taken_at


# -- Money -------------------------------------------------------------------------------------


def money_page(view: MoneyView, by: str) -> Html:
    series = view.stacks[by]
    tabs = " · ".join(
        f'<a href="/money?by={g}"{" class=active" if g == by else ""}>{g}</a>' for g in view.stacks
    )
    chart = svg.stacked_bars(view.days, series, label=f"spend per day by {by}", fmt=usd)
    data = table(
        ["day", *series.keys(), "total"],
        [
            (day, *(usd(values[i]) for values in series.values()), usd(sum(v[i] for v in series.values())))
            for i, day in enumerate(view.days)
        ],
        cls="numbers",
    )
    budgets = table(
        ["period", "since", "spent", "budget", "used"],
        [
            (
                b["period"],
                when(b["since"]),
                usd(b["spent_usd"]),
                usd(b["budget_usd"]) if b["budget_usd"] else "no budget set",
                Html(f'<meter min="0" max="1" value="{min(b["used"], 1.0):.3f}"></meter> {b["used"]:.0%}')
                if b["used"] is not None
                else None,
            )
            for b in view.budgets
        ],
    )
    top = table(
        ["job", "name", f"cost (last {len(view.days)} days)"],
        [
            (job_link(j["id"]) if j["id"] != "-" else "-", j["name"], usd(j["cost_usd"]))
            for j in view.top_jobs
        ],
    )
    lost = view.to_dict()["preemption_lost_usd"]
    losses = table(
        ["job", "attempt", "machine", "preempted", "work redone", "lost"],
        [
            (
                job_link(p["job_id"], p["name"]),
                p["attempt"],
                p["machine"],
                when(p["preempted_at"]),
                ("at most " if p["upper_bound"] else "") + duration(p["redone_s"]),
                usd(p["lost_usd"]),
            )
            for p in view.preemption_losses
        ],
    )
    body = (
        f"<h1>Money</h1><p class=summary>{escape(usd(view.total_usd))} over the last {len(view.days)} days "
        f"(UTC) · stack by {tabs}</p>"
        f"<h2>Spend per day by {escape(by)}</h2>"
        + chart_block(chart, list(series), f"/api/money?by={by}", data)
        + f"<h2>Budgets</h2>{budgets}<h2>Most expensive jobs</h2>{top}"
        f"<h2>Lost to preemption: {escape(usd(lost))}</h2>{losses}"
    )
    return layout("Money", body, active="money")


# -- Reliability -------------------------------------------------------------------------------


def reliability_page(view: ReliabilityView) -> Html:
    rows = [m for m in view.markets if m["machine_hours"] or m["preemptions"]]
    labels = [f"{m['type']} {m['zone']} {m['market']}" for m in rows]
    rate_chart = svg.stacked_bars(
        labels,
        {"preemptions per machine-hour": [m["per_machine_hour"] or 0.0 for m in rows]},
        label="preemptions per machine-hour",
        fmt=lambda v: f"{v:.3g}",
    )
    rate_table = table(
        ["type", "zone", "market", "machine-hours", "preemptions", "per machine-hour"],
        [
            (m["type"], m["zone"], m["market"], f"{m['machine_hours']:.2f}", m["preemptions"],
             "-" if m["per_machine_hour"] is None else f"{m['per_machine_hour']:.3g}")
            for m in rows
        ],
        cls="numbers",
    )
    outcome_chart = svg.stacked_bars(view.weeks, view.outcomes, label="job outcomes per week")
    outcome_table = table(
        ["week", *view.outcomes.keys()],
        [(week, *(v[i] for v in view.outcomes.values())) for i, week in enumerate(view.weeks)],
        cls="numbers",
    )
    body = (
        "<h1>Reliability</h1><h2>Preemptions per machine-hour, by type, zone and market</h2>"
        + chart_block(rate_chart, ["preemptions per machine-hour"], "/api/reliability", rate_table)
        + "<h2>Job outcomes per week</h2>"
        + chart_block(outcome_chart, list(view.outcomes), "/api/reliability", outcome_table)
    )
    return layout("Reliability", body, active="reliability")


def message_page(status: int, title: str, message: str, hint: str | None = None) -> Html:
    """An error page (404, 403, a refused action): the message escaped, with a hint."""
    body = f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
    if hint:
        body += f'<p class="hint">{escape(hint)}</p>'
    return layout(f"{status} {title}", body + '<p><a href="/now">back to Now</a></p>', active="")
