"""Stacked bar charts as inline SVG, drawn on the server (no JavaScript, no outside library).

One bar per time slot, one colour per inbox (the seven busiest, ties by name; the rest as
"other"); each bar segment carries a ``<title>`` (a tooltip and what a screen reader reads),
and the chart a title and a summary. Colours are CSS classes (``s0``..``s7`` in
static/page.css; tests/unit/test_page_access.py checks their contrast). Pure; see
docs/ARCHITECTURE.md, "The dashboard".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingestd.page.html import Html, fmt_count, join, tag
from ingestd.page.queries import Slot, Window
from ingestd.sizes import iec

COLOURS = 8  # s0..s6 for the busiest inboxes, s7 for the rest
OTHER = "other inboxes"
WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 56, 22, 8


@dataclass(frozen=True)
class Series:
    """What to draw: which measure, and how a slot's start time is written."""

    measure: str  # "files" or "bytes"
    label: Callable[[int], str]  # slot start (epoch seconds) -> axis text
    when: Callable[[int], str]  # slot start -> its time in a tooltip
    tick_first: Callable[[int], bool]  # whether a slot start is a labelled tick


def minute_series(measure: str) -> Series:
    return Series(
        measure,
        label=lambda t: time.strftime("%H:%M", time.localtime(t)),
        when=lambda t: time.strftime("%H:%M", time.localtime(t)),
        tick_first=lambda t: time.localtime(t).tm_min % 10 == 0,
    )


def hour_series(measure: str) -> Series:
    return Series(
        measure,
        label=lambda t: time.strftime("%a %d", time.localtime(t)),
        when=lambda t: time.strftime("%a %d %H:00", time.localtime(t)),
        tick_first=lambda t: time.localtime(t).tm_hour == 0,
    )


def inbox_groups(slots: Sequence[Slot], *, measure: str) -> list[str]:
    """The inboxes drawn in their own colour (busiest first), OTHER last when there are more."""
    totals: dict[str, int] = {}
    for s in slots:
        totals[s.inbox] = totals.get(s.inbox, 0) + (s.files if measure == "files" else s.bytes)
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    if len(ranked) <= COLOURS:
        return ranked
    return [*ranked[: COLOURS - 1], OTHER]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for m in (1, 2, 5, 10):
        if m * scale >= value:
            return m * scale
    return 10 * scale


def _amount(value: float, measure: str) -> str:
    return iec(value) if measure == "bytes" else fmt_count(value)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    window: Window,
    slots: Sequence[Slot],
    series: Series,
    palette: Sequence[str] | None = None,
) -> Html:
    """The chart's figure: the SVG, its legend, and its numbers per inbox in a table.
    ``palette`` (``inbox_groups`` of every chart on a page) keeps an inbox's colour the same
    in each chart; without it the chart ranks its own inboxes."""
    ranked = list(palette) if palette is not None else inbox_groups(slots, measure=series.measure)
    colour = {name: i if name != OTHER else COLOURS - 1 for i, name in enumerate(ranked)}
    present = {s.inbox if s.inbox in colour else OTHER for s in slots}
    groups = [name for name in dict.fromkeys([*ranked, OTHER]) if name in present]
    colour.setdefault(OTHER, COLOURS - 1)
    stacks: dict[int, dict[str, tuple[int, int]]] = {}
    for s in slots:
        group = s.inbox if s.inbox in colour else OTHER
        files, size = stacks.setdefault(s.slot, {}).get(group, (0, 0))
        stacks[s.slot][group] = (files + s.files, size + s.bytes)

    def value(pair: tuple[int, int]) -> int:
        return pair[0] if series.measure == "files" else pair[1]

    top = nice_ceiling(
        max((sum(value(p) for p in st.values()) for st in stacks.values()), default=0)
    )
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    bar_w = plot_w / window.slots
    parts: list[Html] = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            Html(f'<line class="grid" x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>')
        )
        parts.append(
            tag(
                "text",
                _amount(top * fraction, series.measure),
                class_="axis",
                x=LEFT - 4,
                y=f"{y + 4:.1f}",
                text_anchor="end",
            )
        )
    for i in range(window.slots):
        start = window.start + i * window.step
        x = LEFT + i * bar_w
        if series.tick_first(start) and x < WIDTH - 36:  # a label must fit before the edge
            parts.append(
                tag("text", series.label(start), class_="axis", x=f"{x:.1f}", y=HEIGHT - 6)
            )
        y = TOP + plot_h
        for group in groups:
            pair = stacks.get(i, {}).get(group)
            if not pair or not value(pair):
                continue
            h = plot_h * value(pair) / top
            y -= h
            tip = f"{group} · {series.when(start)}: {fmt_count(pair[0])} files, {iec(pair[1])}"
            parts.append(
                tag(
                    "rect",
                    tag("title", tip),
                    class_=f"s{colour[group]}",
                    x=f"{x + 0.5:.1f}",
                    y=f"{y:.1f}",
                    width=f"{max(0.5, bar_w - 1):.1f}",
                    height=f"{h:.1f}",
                )
            )
    total_files = sum(s.files for s in slots)
    total_bytes = sum(s.bytes for s in slots)
    summary = f"{title}: {fmt_count(total_files)} files, {iec(total_bytes)}"
    svg = Html(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="none">'
        + tag("title", title, id=f"{chart_id}-t")
        + tag("desc", summary, id=f"{chart_id}-d")
        + join(parts)
        + "</svg>"
    )
    legend = (
        tag(
            "ul",
            *(
                tag("li", tag("span", class_=f"sw s{colour[g]}", aria_hidden="true"), g)
                for g in groups
            ),
            class_="legend",
        )
        if groups
        else tag("p", "nothing in this window", class_="muted")
    )
    return tag(
        "figure",
        tag(
            "figcaption",
            tag("strong", title),
            " ",
            tag("span", summary.split(": ", 1)[1], class_="muted"),
        ),
        svg,
        legend,
        _numbers(slots, groups),
        class_="chart-box",
        id=chart_id,
    )


def _numbers(slots: Sequence[Slot], groups: list[str]) -> Html:
    """The chart's totals per inbox as a table, for screen readers and exact values."""
    per: dict[str, tuple[int, int]] = {}
    for s in slots:
        files, size = per.get(s.inbox, (0, 0))
        per[s.inbox] = (files + s.files, size + s.bytes)
    if not per:
        return Html("")
    rows = [
        tag(
            "tr",
            tag("td", name),
            tag("td", fmt_count(f), class_="n"),
            tag("td", iec(b), class_="n"),
        )
        for name, (f, b) in sorted(per.items(), key=lambda kv: -kv[1][0])
    ]
    return tag(
        "details",
        tag("summary", "numbers per inbox"),
        tag("table", tag("tr", tag("th", "inbox"), tag("th", "files"), tag("th", "bytes")), *rows),
    )
