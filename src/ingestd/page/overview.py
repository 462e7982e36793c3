"""``/``: the overview an operator opens first. Today's arrivals and how many are stored, the
queue now (the file in flight, the next files, the cooldown or gate, the backlog's ETA),
arrivals and uploads over the last hour and the last 7 days per inbox, the newest batches and
the problems by reason. See docs/ARCHITECTURE.md, "The dashboard".

About 480 lines, one section renderer each (today, queue, charts, batches, problems): the page's
sections share one snapshot of reads, so they stay in the module that takes it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ingestd import status as status_mod
from ingestd.page import batches as batches_view
from ingestd.page import problems as problems_view
from ingestd.page.actions import Actions, button
from ingestd.page.chart import bar_chart, hour_series, inbox_groups, minute_series
from ingestd.page.eta import backlog_eta
from ingestd.page.files import search_form
from ingestd.page.html import Html, fmt_count, fmt_duration, fmt_time, href, tag
from ingestd.page.layout import card, page, table
from ingestd.page.queries import (
    Search,
    Window,
    arrivals,
    arrived_since,
    lanes_updated,
    next_due,
    problem_groups,
    recent_batches,
    retry_waiting,
    uploaded_since,
    uploads,
    waiting,
)
from ingestd.page.source import PageSource
from ingestd.redact import redact_text
from ingestd.sizes import iec
from ingestd.states import FileState

NEXT_SHOWN = 10
BATCHES_SHOWN = 8
PROBLEM_GROUPS_SHOWN = 8


def local_midnight(now: float) -> float:
    day = time.localtime(now)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


def render(
    source: PageSource, query: Mapping[str, str], *, actions: Actions | None = None
) -> bytes:
    now = source.now()
    measure = "bytes" if query.get("chart") == "bytes" else "files"
    hour = Window.ending_at(now, step=60, slots=60)
    week = Window.ending_at(now, step=3600, slots=168)
    midnight = local_midnight(now)
    destinations = sorted(source.settings.destinations)
    aging = source.settings.queue.aging_minutes * 60.0
    with source.reader() as reader:
        status = status_mod.collect(reader, source.settings, now=now)
        with reader.snapshot():
            today = arrived_since(reader, midnight)
            stored_today = uploaded_since(reader, midnight)
            left = waiting(reader)
            looked = lanes_updated(reader)
            upcoming = {
                d: (
                    next_due(reader, d, now=now, limit=NEXT_SHOWN, aging_seconds=aging),
                    retry_waiting(reader, d, now=now, limit=5),
                )
                for d in destinations
            }
            charts = {
                "hour": (arrivals(reader, hour), uploads(reader, hour)),
                "week": (arrivals(reader, week), uploads(reader, week)),
            }
            batches = recent_batches(reader, limit=BATCHES_SHOWN)
            groups = problem_groups(reader)
    cooldown = source.settings.queue.cooldown_seconds
    body = [
        _daemon_line(status),
        _today(today, stored_today, status, left, cooldown=cooldown, now=now),
        _queue(status, left, upcoming, source, looked=looked, now=now, actions=actions),
        _charts(charts, hour=hour, week=week, measure=measure),
        batches_view.section(batches, now=now, idle_seconds=source.settings.batch_idle_seconds),
        problems_view.section(groups, limit=PROBLEM_GROUPS_SHOWN, actions=actions),
        _latest_problems(status),
        _all_time(status),
        card(
            "Find a file",
            search_form(Search(), sorted(i.name for i in source.settings.inboxes)),
            id="find",
        ),
    ]
    return page(title="Overview", current="/", body=Html("".join(body)), live=True)


def _daemon_line(status: dict[str, Any]) -> Html:
    alive = [n for n in status["daemon"]["nodes"] if n["alive"]]
    if alive:
        n = alive[0]
        text = tag(
            "p",
            tag("span", "running", class_="ok"),
            f" on {n['host']} (pid {n['pid']}, version {n['version']}, up "
            f"{fmt_duration(n['uptime_seconds'])})",
            f" and {len(alive) - 1} more node(s)" if len(alive) > 1 else "",
            id="daemon",
        )
    else:
        text = tag(
            "p",
            tag("span", "not running", class_="bad"),
            " (no heartbeat in the last 30 s)",
            id="daemon",
        )
    return text


def _stat(label: str, value: str, *, id: str, note: str = "", tone: str = "") -> Html:
    return tag(
        "div",
        tag("div", value, class_=f"num {tone}".strip(), id=id),
        tag("div", label, class_="lbl"),
        tag("div", note, class_="muted") if note else "",
        class_="stat",
    )


def _today(
    today: dict[str, tuple[int, int]],
    stored_today: tuple[int, int],
    status: dict[str, Any],
    left: dict[str, tuple[int, int]],
    *,
    cooldown: float,
    now: float,
) -> Html:
    def n(state: FileState) -> int:
        return today.get(state.value, (0, 0))[0]

    arrived = sum(f for f, _ in today.values())
    arrived_bytes = sum(b for _, b in today.values())
    stored = n(FileState.UPLOADED) + n(FileState.DUPLICATE)
    pending = n(FileState.DISCOVERED) + n(FileState.QUEUED) + n(FileState.UPLOADING)
    files_left = sum(f for f, _ in left.values())
    bytes_left = sum(b for _, b in left.values())
    eta = _eta(status, files_left, bytes_left, cooldown=cooldown)
    eta_text = "empty" if files_left == 0 else ("unknown" if eta is None else fmt_duration(eta))
    done_at = f"around {fmt_time(now + eta, now=now)}, " if eta and files_left else ""
    return card(
        "Today",
        tag(
            "div",
            _stat(
                "arrived today",
                fmt_count(arrived),
                id="today-arrived",
                note=iec(arrived_bytes),
            ),
            _stat(
                "safely stored",
                fmt_count(stored),
                id="today-stored",
                note=f"{fmt_count(n(FileState.UPLOADED))} uploaded + "
                f"{fmt_count(n(FileState.DUPLICATE))} already stored (duplicates)",
                tone="ok",
            ),
            _stat("still on the way", fmt_count(pending), id="today-pending"),
            _stat(
                "rejected",
                fmt_count(n(FileState.REJECTED)),
                id="today-rejected",
                tone="bad" if n(FileState.REJECTED) else "",
            ),
            _stat(
                "failed",
                fmt_count(n(FileState.FAILED)),
                id="today-failed",
                tone="bad" if n(FileState.FAILED) else "",
            ),
            _stat(
                "uploaded today",
                fmt_count(stored_today[0]),
                id="today-uploaded",
                note=f"{iec(stored_today[1])}, whenever they arrived",
            ),
            _stat(
                "backlog done in",
                eta_text,
                id="backlog-eta",
                note=f"{done_at}{fmt_count(files_left)} files, {iec(bytes_left)} to send",
            ),
            class_="grid",
        ),
        tag("p", "Today is since local midnight of the daemon's host.", class_="muted"),
        id="today",
    )


def in_flight(dest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file of a destination uploading now (``transfers`` of them at most)."""
    flying = dest.get("in_flight")
    if flying is None:
        return [dest["current"]] if dest.get("current") else []
    return list(flying)


def _current_speed(status: dict[str, Any]) -> float | None:
    speeds = [
        f["bytes_per_second"]
        for d in status["destinations"].values()
        for f in in_flight(d)
        if f["bytes_per_second"]
    ]
    return float(sum(speeds)) if speeds else None


def _uploading(cur: dict[str, Any], *, first: bool) -> Html:
    """One file in flight: its name, a progress bar, speed and ETA."""
    return tag(
        "div",
        tag(
            "p",
            "Uploading ",
            tag(
                "a",
                cur["path"],
                href=f"/files/{cur['id']}",
                id="current-file" if first else None,
                class_="name",
            ),
            tag("span", f" from {cur['inbox']}", class_="muted"),
        ),
        tag(
            "progress",
            f"{cur['percent']}%",
            value=cur["bytes_sent"],
            max=max(1, cur["size"]),
            aria_label=f"upload progress of file {cur['id']}",
        ),
        tag(
            "p",
            f"{iec(cur['bytes_sent'])} of {iec(cur['size'])} "
            f"({cur['percent']}%) · {iec(cur['bytes_per_second'])}/s · ETA "
            f"{fmt_duration(cur['eta_seconds'])}",
            class_="muted",
        ),
        class_="current",
    )


def _eta(
    status: dict[str, Any], files_left: int, bytes_left: int, *, cooldown: float
) -> float | None:
    return backlog_eta(
        bytes_left=bytes_left,
        files_left=files_left,
        recent_rate=status["queue"]["throughput_bytes_per_second"],
        current_speed=_current_speed(status),
        cooldown_seconds=cooldown,
    )


def _countdown(seconds: float, text: str) -> Html:
    """Seconds left, counted down each second by static/live.js (static without it)."""
    secs = max(0, round(seconds))
    return tag("span", f"{text} {secs} s", data_countdown=secs, data_text=text, class_="countdown")


def _queue(
    status: dict[str, Any],
    left: dict[str, tuple[int, int]],
    upcoming: dict[str, tuple[list[Any], list[Any]]],
    source: PageSource,
    *,
    looked: dict[str, float],
    now: float,
    actions: Actions | None = None,
) -> Html:
    blocks = []
    current_shown = False
    for name, dest in status["destinations"].items():
        lines: list[Html] = []
        files_left, bytes_left = left.get(name, (0, 0))
        state = tag("span", "up", class_="ok")
        if dest["up"] is False:
            state = tag(
                "span", f"{dest['hold'] or 'down'} since {dest['down_since']}", class_="bad"
            )
        lines.append(
            tag(
                "p",
                tag("strong", name),
                ": ",
                state,
                tag("span", " paused (ingestd resume)", class_="warn") if dest["paused"] else "",
                f" · {fmt_count(files_left)} files, {iec(bytes_left)} waiting",
            )
        )
        if name in source.settings.destinations:
            verb = "resume" if dest["paused"] else "pause"
            lines.append(button(actions, f"/lanes/{name}/{verb}", f"{verb.capitalize()} {name}"))
        if dest["up"] is False and dest["last_error"]:
            lines.append(tag("p", dest["last_error"], class_="muted name"))
        flying = in_flight(dest)
        for cur in flying:
            # the page's first file in flight is the one a test or a link can find by id
            lines.append(_uploading(cur, first=not current_shown))
            current_shown = True
        if flying:
            pass  # what holds the lane shows once nothing is in flight
        elif dest["hold"] and dest["up"] is not False:
            # A busy gate writes the lane row at each look; the next comes a poll later (or
            # after a longer Retry-After, which the catalog does not hold: "about").
            config = source.settings.destinations.get(name)
            poll = config.gate_poll_seconds if config is not None else 0.0
            next_look = looked.get(name, now) + poll - now
            lines.append(
                tag(
                    "p",
                    tag("span", "waiting: ", class_="warn"),
                    dest["hold"],
                    " · ",
                    _countdown(next_look, "next look in about")
                    if next_look > 0
                    else "looking again now",
                )
            )
        elif dest["cooldown_seconds_left"]:
            lines.append(
                tag("p", _countdown(dest["cooldown_seconds_left"], "cooldown: next file in"))
            )
        due, later = upcoming.get(name, ([], []))
        if due:
            rows = [
                tag(
                    "tr",
                    tag("td", str(i + 1), class_="n"),
                    tag("td", tag("a", r.relpath, href=f"/files/{r.id}", class_="name")),
                    tag("td", r.inbox),
                    tag("td", str(r.priority), class_="n"),
                    tag("td", iec(r.size), class_="n"),
                    tag("td", fmt_time(r.queued_at, now=now)),
                    tag("td", str(r.attempts), class_="n"),
                )
                for i, r in enumerate(due)
            ]
            lines.append(
                table(
                    [
                        "#",
                        "next files, in order",
                        "inbox",
                        "priority",
                        "size",
                        "queued",
                        "attempts",
                    ],
                    rows,
                    caption=f"next files for {name}",
                )
            )
        if later:
            lines.append(
                tag(
                    "p",
                    "Waiting for a retry: ",
                    *(
                        tag(
                            "span",
                            tag("a", r.relpath, href=f"/files/{r.id}", class_="name"),
                            f" at {fmt_time(r.next_attempt_at, now=now)}; ",
                        )
                        for r in later
                    ),
                    class_="muted",
                )
            )
        blocks.append(tag("div", *lines, class_="dest"))
    if not blocks:
        blocks.append(tag("p", "No destinations configured.", class_="muted"))
    return card(
        "Queue now",
        *blocks,
        tag(
            "p",
            "Queue order is the lane's: files due now, highest priority first, first come within"
            " a priority; a file that has waited aging_minutes goes first.",
            class_="muted",
        ),
        id="queue",
    )


def _charts(charts: dict[str, Any], *, hour: Window, week: Window, measure: str) -> Html:
    other = "bytes" if measure == "files" else "files"
    unit = "files" if measure == "files" else "bytes"
    hour_arr, hour_up = charts["hour"]
    week_arr, week_up = charts["week"]
    palette = inbox_groups([*week_arr, *hour_arr], measure="files")
    return card(
        "Arrivals and uploads",
        tag("p", f"Showing {unit}. ", tag("a", f"Show {other}", href=href("/", chart=other))),
        tag(
            "div",
            bar_chart(
                chart_id="c-hour-in",
                title="Arrived per minute, last hour",
                window=hour,
                slots=hour_arr,
                series=minute_series(measure),
                palette=palette,
            ),
            bar_chart(
                chart_id="c-hour-up",
                title="Uploaded per minute, last hour",
                window=hour,
                slots=hour_up,
                series=minute_series(measure),
                palette=palette,
            ),
            bar_chart(
                chart_id="c-week-in",
                title="Arrived per hour, last 7 days",
                window=week,
                slots=week_arr,
                series=hour_series(measure),
                palette=palette,
            ),
            bar_chart(
                chart_id="c-week-up",
                title="Uploaded per hour, last 7 days",
                window=week,
                slots=week_up,
                series=hour_series(measure),
                palette=palette,
            ),
            class_="charts",
        ),
        id="charts",
    )


def _latest_problems(status: dict[str, Any]) -> Html:
    """The newest failures and rejections, each with its name and reason (status's own)."""
    rows = [
        tag(
            "tr",
            tag("td", tag("a", f"#{p['id']}", href=f"/files/{p['id']}")),
            tag("td", f"{p['inbox']}/", tag("span", p["path"], class_="name")),
            tag("td", tag("span", p["state"], class_=f"st st-{p['state']}")),
            tag("td", f"{p['reason_code'] or ''}: {redact_text(p['reason'] or '')}"),
        )
        for p in status["recent_problems"]
    ]
    if not rows:
        return Html("")
    return card(
        "Latest failures and rejections",
        table(["id", "file", "state", "reason"], rows, caption="latest problems"),
        id="latest-problems",
    )


def _all_time(status: dict[str, Any]) -> Html:
    cells = [
        tag(
            "div",
            tag("div", fmt_count(n), class_="num", id=f"count-{state}"),
            tag("div", state, class_="lbl"),
            class_="stat",
        )
        for state, n in status["counts"].items()
    ]
    return card("Every file so far, by state", tag("div", *cells, class_="grid"), id="counts")
