"""``ingestd status``: one snapshot of the catalog, as JSON and as an 80-column text view.

Every name and error text in the view goes through ``untrusted.shown`` (and is never taken as
rich markup); the JSON keeps exact values. Error texts are masked (``redact``) in both.

It reads through ``catalog.reader`` (the DBAPI driver, plain SQL), never SQLAlchemy: the
command is run all day by people and scripts, and SQLAlchemy's import alone would double its
start-up (``tests/unit/test_lazy_imports.py`` keeps it that way).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ingestd.catalog.reader import Reader, open_reader
from ingestd.catalog.shapes import file_dict
from ingestd.config import Settings
from ingestd.redact import redact_text
from ingestd.sizes import iec
from ingestd.states import FileState
from ingestd.timefmt import iso_utc
from ingestd.untrusted import for_markup, shown

SCHEMA_VERSION = 1
HEARTBEAT_STALE_SECONDS = 30.0
THROUGHPUT_WINDOW_SECONDS = 900.0
PROBLEMS_SHOWN = 5


def parse_since(text: str | None) -> float | None:
    """An ISO date/time (local time when no zone is given) as epoch seconds."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"ingestd: --since {text!r} is not an ISO date like 2026-11-22") from None
    return when.timestamp()


def collect(reader: Reader, settings: Settings, *, now: float | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as the documented JSON schema (see README)."""
    now = time.time() if now is None else now
    uploading = FileState.UPLOADING.value
    with reader.snapshot():
        node_rows = reader.rows("SELECT * FROM nodes ORDER BY beat_at DESC")
        lane_rows = {r.destination: r for r in reader.rows("SELECT * FROM lanes")}
        health = {r.inbox: r for r in reader.rows("SELECT * FROM inbox_health")}
        # Kept by triggers (migration 0006): a few rows however large the catalog.
        per_inbox = reader.rows("SELECT inbox, state, files FROM file_totals WHERE files != 0")
        waiting = reader.one(
            "SELECT count(*) AS files, coalesce(sum(size - bytes_sent), 0) AS bytes"
            " FROM files WHERE state IN (?, ?)",
            (FileState.QUEUED.value, uploading),
        )
        recent = reader.one(
            "SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes"
            " FROM files WHERE state = ? AND finished_at >= ?",
            (FileState.UPLOADED.value, now - THROUGHPUT_WINDOW_SECONDS),
        )
        in_flight: dict[str, list[Any]] = {}
        for r in reader.rows(
            "SELECT * FROM files WHERE state = ? ORDER BY started_at, id", (uploading,)
        ):
            in_flight.setdefault(r.destination, []).append(r)
        # One indexed range per state, merged here: "state IN (...) ORDER BY updated_at"
        # would sort every failed and rejected file of the catalog to show five.
        newest = [
            reader.rows(
                "SELECT * FROM files WHERE state = ? ORDER BY updated_at DESC LIMIT ?",
                (state.value, PROBLEMS_SHOWN),
            )
            for state in (FileState.FAILED, FileState.REJECTED)
        ]
    problems = sorted(
        (r for rows in newest for r in rows), key=lambda r: r.updated_at, reverse=True
    )[:PROBLEMS_SHOWN]
    counts = {s.value: 0 for s in FileState}
    inboxes: dict[str, dict[str, int]] = {
        i.name: {s.value: 0 for s in FileState} for i in settings.inboxes
    }
    for total in per_inbox:
        counts[total.state] += int(total.files)
        per_state = inboxes.setdefault(total.inbox, {s.value: 0 for s in FileState})
        per_state[total.state] = int(total.files)
    rate = float(recent.bytes) / THROUGHPUT_WINDOW_SECONDS if recent.files else None
    waiting_bytes = int(waiting.bytes)
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": iso_utc(now),
        "daemon": _daemon(node_rows, now),
        "counts": counts,
        "inboxes": inboxes,
        "inbox_health": {
            name: {
                "up": bool(h.up),
                "down_since": iso_utc(h.down_since),
                "last_error": _masked(h.last_error),
            }
            for name, h in health.items()
        },
        "destinations": {
            name: _destination(name, lane_rows.get(name), in_flight.get(name, []), now)
            for name in sorted(set(settings.destinations) | set(lane_rows))
        },
        "queue": {
            "files": int(waiting.files),
            "bytes": waiting_bytes,
            "throughput_bytes_per_second": rate,
            "eta_seconds": round(waiting_bytes / rate) if rate else None,
        },
        "recent_problems": [file_dict(r) for r in problems],
    }


def _masked(text: str | None) -> str | None:
    """A server's or library's error text with any credential it quotes masked."""
    return None if text is None else redact_text(text)


def _daemon(rows: Sequence[Any], now: float) -> dict[str, Any]:
    alive = [r for r in rows if r.stopped_at is None and now - r.beat_at < HEARTBEAT_STALE_SECONDS]
    return {
        "running": bool(alive),
        "nodes": [
            {
                "node": r.node,
                "pid": r.pid,
                "host": r.host,
                "version": r.version,
                "started_at": iso_utc(r.started_at),
                "last_heartbeat": iso_utc(r.beat_at),
                "uptime_seconds": round(now - r.started_at) if r in alive else None,
                "alive": r in alive,
                "detail": r.detail,
            }
            for r in rows
        ],
    }


def _destination(name: str, lane: Any, uploading: Sequence[Any], now: float) -> dict[str, Any]:
    """One destination: its lane's health and every file in flight (``transfers`` of them at
    most; ``current`` is the first, as before there were several)."""
    files = [_in_flight(r, now) for r in uploading]
    return {
        "up": bool(lane.up) if lane is not None else None,
        "down_since": iso_utc(lane.down_since) if lane is not None else None,
        "last_error": _masked(lane.last_error) if lane is not None else None,
        "hold": _masked(lane.hold_reason) if lane is not None else None,
        "paused": bool(lane.paused) if lane is not None else False,
        "cooldown_seconds_left": (
            max(0.0, round(lane.cooldown_until - now, 1))
            if lane is not None and lane.cooldown_until and lane.cooldown_until > now
            else 0.0
        ),
        "conditional_writes": _key_check(lane),
        "current": files[0] if files else None,
        "in_flight": files,
    }


def _in_flight(current: Any, now: float) -> dict[str, Any]:
    elapsed = max(0.001, now - (current.started_at or now))
    speed = current.bytes_sent / elapsed
    left = max(0, current.size - current.bytes_sent)
    return {
        "id": current.id,
        "inbox": current.inbox,
        "path": current.relpath,
        "bytes_sent": current.bytes_sent,
        "size": current.size,
        "percent": round(100.0 * current.bytes_sent / current.size, 1) if current.size else 100.0,
        "bytes_per_second": round(speed),
        "eta_seconds": round(left / speed) if speed else None,
    }


def _key_check(lane: Any) -> dict[str, Any] | None:
    """How the destination checks a key is free, as its daemon decided at start (for
    ``conditional_writes = "auto"`` by a probe); None before any daemon has said."""
    on = getattr(lane, "conditional_writes", None)
    if on is None:
        return None
    return {"on": bool(on), "reason": _masked(lane.key_check)}


def render(data: dict[str, Any], console: Console | None = None) -> None:
    """Print the human view, readable in 80 columns."""
    (console or Console(width=80)).print(view(data))


def view(data: dict[str, Any]) -> Group:
    """The human view as one renderable (``--watch`` redraws it in place)."""
    lines: list[Any] = []
    alive = [n for n in data["daemon"]["nodes"] if n["alive"]]
    if alive:
        n = alive[0]
        lines.append(
            Text.from_markup(
                f"[green]running[/] on {for_markup(n['host'])} (pid {n['pid']}, "
                f"version {for_markup(n['version'])}, up {_duration(n['uptime_seconds'])})",
                emoji=False,
            )
        )
    else:
        lines.append(Text.from_markup("[red]not running[/] (no heartbeat in the last 30 s)"))
    lines.append(_counts_table(data))
    for name, dest in data["destinations"].items():
        lines.extend(_destination_lines(name, dest))
    for name, h in data.get("inbox_health", {}).items():
        if not h["up"]:
            lines.append(
                Text.from_markup(
                    f"inbox {for_markup(name)}: [red]down[/] since {h['down_since']}: "
                    f"{for_markup(h['last_error'])}",
                    overflow="fold",
                    emoji=False,
                )
            )
    q = data["queue"]
    eta = f", ETA {_duration(q['eta_seconds'])}" if q["eta_seconds"] else ""
    lines.append(Text(f"queue: {q['files']} file(s), {iec(q['bytes'])} waiting{eta}"))
    if data["recent_problems"]:
        lines.append(Text("recent problems:"))
    for p in data["recent_problems"]:
        reason = (p["reason"] or "").splitlines()[0] if p["reason"] else ""
        lines.append(
            Text.from_markup(
                f"  [red]{p['state']}[/] #{p['id']} {for_markup(p['inbox'])}/"
                f"{for_markup(p['path'])}: {for_markup(p['reason_code'])}: {for_markup(reason)}",
                overflow="fold",
                emoji=False,
            )
        )
    return Group(*lines)


def _counts_table(data: dict[str, Any]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("files")
    short = {
        "discovered": "discov",
        "uploading": "upload",
        "uploaded": "done",
        "duplicate": "dup",
        "rejected": "reject",
        "cancelled": "cancel",
    }
    for state in FileState:
        table.add_column(short.get(state.value, state.value), justify="right")
    table.add_row("total", *(str(data["counts"][s.value]) for s in FileState))
    for inbox, counts in data["inboxes"].items():
        table.add_row(Text(shown(inbox)[:14]), *(str(counts[s.value]) for s in FileState))
    return table


def watch(settings: Settings, *, interval: float = 2.0) -> None:
    """Redraw the status view in place every ``interval`` seconds until Ctrl-C (a connection
    per refresh, so a restarted database server does not end the view)."""
    from rich.live import Live

    with Live(console=Console(width=80), auto_refresh=False) as live:
        try:
            while True:
                with open_reader(settings.effective_catalog_url) as reader:
                    data = collect(reader, settings)
                live.update(view(data), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def _destination_lines(name: str, dest: dict[str, Any]) -> list[Text]:
    if dest["up"] is False:
        state = (
            f"[red]{for_markup(dest['hold'] or 'down')}[/] since {dest['down_since']}: "
            f"{for_markup(dest['last_error'])}"
        )
    else:
        state = "[green]up[/]"
    paused = " [yellow](paused)[/]" if dest["paused"] else ""
    out = [
        Text.from_markup(
            f"destination {for_markup(name)}: {state}{paused}", overflow="fold", emoji=False
        )
    ]
    if dest["up"] is not False and dest["hold"]:
        out.append(
            Text.from_markup(
                f"  [yellow]waiting[/]: {for_markup(dest['hold'])}", overflow="fold", emoji=False
            )
        )
    flying = dest.get("in_flight") or ([dest["current"]] if dest["current"] else [])
    for cur in flying:
        eta = f", ETA {_duration(cur['eta_seconds'])}" if cur["eta_seconds"] else ""
        out.append(
            Text(
                f"  uploading {shown(cur['path'])}: {iec(cur['bytes_sent'])} / "
                f"{iec(cur['size'])}"
                f" ({cur['percent']}%) at {iec(cur['bytes_per_second'])}/s{eta}",
                overflow="fold",
            )
        )
    if not flying and dest["cooldown_seconds_left"]:
        out.append(Text(f"  cooldown: next file in {dest['cooldown_seconds_left']:.0f}s"))
    if check := dest.get("conditional_writes"):
        how = "conditional PUT (If-None-Match)" if check["on"] else "HEAD before PUT"
        out.append(Text(f"  key check: {how}", overflow="fold"))
    return out


def render_files(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """The ``files`` table; every cell is plain text (``Text``), never markup."""
    con = console or Console(width=120)
    table = Table(show_edge=False)
    for col in ("id", "state", "inbox", "path", "size", "reason / key"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            Text(shown(r["state"])),
            Text(shown(r["inbox"])),
            Text(shown(r["path"])),
            iec(r["size"]),
            Text(shown(r["reason"] if r["reason"] else r["key"])),
        )
    con.print(table)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
