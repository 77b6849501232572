"""Charts as inline SVG, drawn on the server: no JavaScript charting library at all.

Why not a library: the dashboard must work offline and behind firewalls with every asset
served by runctl, and its charts are bar charts (spend per day stacked by a grouping, outcomes
per week, preemptions per machine-hour). A few dozen lines of SVG draw those; a vendored
library (Chart.js, uPlot) would be 50-200 KB of third-party code to keep up to date, a client
build of the same numbers the table under each chart already shows, and one more thing a
strict Content-Security-Policy has to allow. Server-side SVG also means a chart is in the page
as soon as it loads (screenshots, no-JS browsers, printing).

Every series is one ``<g class="series" data-series="NAME">`` (tests count them); each bar has
a ``<title>`` with its exact figure for a hover tooltip. Colours use presentation attributes,
not inline styles, so the page's CSP needs no ``'unsafe-inline'``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

#: Distinct colours (Okabe-Ito, readable by colour-blind people), reused in order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 40


def colour(index: int) -> str:
    """The colour of the ``index``-th series (also used by the legend)."""
    return PALETTE[index % len(PALETTE)]


def stacked_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> str:
    """A stacked bar chart: one bar per category, one coloured segment per series."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    peak = max(totals, default=0.0)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts.append(
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#888"/>'
    )
    if not categories or peak <= 0:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#666">no data yet</text>'
        )
    else:
        parts.append(
            f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11" fill="#444">'
            f"{escape(fmt(peak))}</text>"
            f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11" fill="#444">'
            f"{escape(fmt(0.0))}</text>"
        )
    slot = plot_w / max(1, len(categories))
    bar_w = max(1.0, slot * 0.8)
    base = [float(TOP + plot_h)] * len(categories)
    for index, (name, values) in enumerate(series.items()):
        parts.append(f'<g class="series" data-series="{escape(name)}" fill="{colour(index)}">')
        for i, value in enumerate(values):
            if value <= 0 or peak <= 0:
                continue
            height = value / peak * plot_h
            base[i] -= height
            x = LEFT + i * slot + (slot - bar_w) / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{base[i]:.1f}" width="{bar_w:.1f}" height="{height:.1f}">'
                f"<title>{escape(categories[i])} · {escape(name)}: {escape(fmt(value))}</title></rect>"
            )
        parts.append("</g>")
    widest = max((len(c) for c in categories), default=0) * 6.5 + 10  # px at font-size 11
    step = max(1, math.ceil(widest / slot))
    for i in range(0, len(categories), step):
        x = LEFT + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
            f'fill="#444">{escape(categories[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend(names: Sequence[str]) -> str:
    """The series' names with their colours, as an HTML list under a chart."""
    items = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'fill="{colour(i)}"/></svg> {escape(name)}</li>'
        for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'
