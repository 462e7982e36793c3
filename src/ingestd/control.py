"""Operator actions on the catalog (retry, cancel, prioritize) and the per-file detail view (show).

Actions are durable rows in the catalog; a running daemon notices them within about a second.
Messages and the ``show`` view give names through ``untrusted.shown``, never as rich markup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text
from sqlalchemy import Engine, or_, select

from ingestd.catalog import db, queries
from ingestd.catalog.repo import Catalog, FileRow, StaleState
from ingestd.catalog.schema import events, files, nodes, parts
from ingestd.catalog.shapes import file_dict
from ingestd.states import TERMINAL, FileState
from ingestd.timefmt import iso_utc
from ingestd.untrusted import for_markup, shown

LIVE_HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """What an action did to one named file: ``done`` or refused, with the exact path (None
    for an id no file has), the state before and after, and a reason when refused.
    ``message`` is the line for people (names through ``untrusted.shown``)."""

    file_id: int
    path: str | None
    done: bool
    was: str | None
    state: str | None
    reason: str
    message: str

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.file_id, "path": self.path, "was": self.was}
        if self.done:
            doc["state"] = self.state
            if self.reason:
                doc["note"] = self.reason
        else:
            doc["reason"] = self.reason
        return doc


def live_nodes(engine: Engine, *, now: float | None = None) -> list[dict[str, Any]]:
    """The daemons whose heartbeat is fresh: node, pid and host of each."""
    now = time.time() if now is None else now
    with db.read_tx(engine) as conn:
        alive = conn.execute(
            select(nodes).where(
                nodes.c.stopped_at.is_(None), nodes.c.beat_at >= now - LIVE_HEARTBEAT_SECONDS
            )
        ).all()
    return [{"node": n.node, "pid": n.pid, "host": n.host} for n in alive]


def daemon_note(engine: Engine, *, now: float | None = None) -> str:
    """Whether a running daemon will act on what was just written, in one sentence."""
    return note_for(live_nodes(engine, now=now))


def note_for(alive: list[dict[str, Any]]) -> str:
    if alive:
        who = ", ".join(f"pid {n['pid']} on {shown(n['host'])}" for n in alive)
        return f"The running daemon ({who}) acts on this within 2 seconds."
    return "No daemon is running: this takes effect when ingestd next starts."


def retry(
    catalog: Catalog, ids: list[int], *, all_failed: bool, inbox: str | None, batch: int | None
) -> list[Outcome]:
    """Retry failed files: one Outcome per file named or matched (none when --failed matched
    nothing)."""
    targets = list(ids)
    if all_failed:
        rows = queries.list_files(
            catalog.engine, states=[FileState.FAILED.value], inbox=inbox, batch=batch
        )
        targets += [r["id"] for r in rows if r["id"] not in targets]

    def refuse(row: FileRow) -> str | None:
        if row.state == FileState.FAILED:
            return None
        return f"is {row.state}; only failed files can be retried"

    def act(row: FileRow) -> tuple[str, str, str]:
        new_state = catalog.retry(row.id)
        if new_state == FileState.DUPLICATE:
            note = "a copy was uploaded meanwhile; marked duplicate"
            return str(new_state), note, f"{_named(row)}: {note}"
        return str(new_state), "", f"{_named(row)}: back in the queue ({new_state})"

    return _each(catalog, targets, refuse=refuse, act=act)


def cancel(catalog: Catalog, ids: list[int]) -> list[Outcome]:
    """Cancel files: one Outcome per file named."""

    def refuse(row: FileRow) -> str | None:
        if row.state not in TERMINAL:
            return None
        return f"is already {row.state}; nothing to cancel"

    def act(row: FileRow) -> tuple[str, str, str]:
        before = catalog.request_cancel(row.id)
        if before == FileState.UPLOADING:
            note = "the upload will be aborted (also on the server); the source is left in place"
            return FileState.UPLOADING.value, note, f"{_named(row)}: uploading; {note}"
        return (
            FileState.CANCELLED.value,
            "the source is left in place",
            f"{_named(row)}: cancelled (was {before}); the source is left in place",
        )

    return _each(catalog, ids, refuse=refuse, act=act)


def prioritize(
    catalog: Catalog, ids: list[int], *, inbox: str | None, batch: int | None
) -> list[Outcome]:
    """Move queued files to the front of their lane: the ids named, and with ``inbox`` or
    ``batch`` every queued file they match. One Outcome per file; an uploading file is not
    interrupted (it is already in flight)."""
    targets = list(ids)
    if inbox is not None or batch is not None:
        matched = queries.list_files(
            catalog.engine, states=[FileState.QUEUED.value], inbox=inbox, batch=batch
        )
        targets += [r["id"] for r in matched if r["id"] not in targets]

    def refuse(row: FileRow) -> str | None:
        if row.state == FileState.QUEUED:
            return None
        if row.state == FileState.UPLOADING:
            return "is uploading already; nothing to move"
        return f"is {row.state}; only queued files can be moved to the front"

    # One transaction for all: they go to the front together, first come among themselves.
    movable = [r.id for r in map(catalog.get, targets) if r is not None and refuse(r) is None]
    moved = catalog.prioritize(sorted(movable))

    def act(row: FileRow) -> tuple[str, str, str]:
        if row.id not in moved:
            raise StaleState(f"file {row.id} left the queue meanwhile")
        note = f"priority {moved[row.id]}"
        return FileState.QUEUED.value, note, f"{_named(row)}: moved to the front ({note})"

    return _each(catalog, targets, refuse=refuse, act=act)


def _named(row: FileRow) -> str:
    return f"file {row.id} ({shown(row.relpath)})"


def _each(
    catalog: Catalog,
    ids: list[int],
    *,
    refuse: Callable[[FileRow], str | None],
    act: Callable[[FileRow], tuple[str, str, str]],
) -> list[Outcome]:
    """Apply ``act`` (giving the new state, a note and the line for people) to each named
    file that exists and that ``refuse`` lets through; one Outcome per file."""
    out: list[Outcome] = []
    for file_id in ids:
        row = catalog.get(file_id)
        if row is None:
            out.append(
                Outcome(
                    file_id,
                    None,
                    False,
                    None,
                    None,
                    "no such file",
                    f"file {file_id}: no such file",
                )
            )
            continue
        problem = refuse(row)
        if problem is None:
            try:
                state, note, message = act(row)
                out.append(
                    Outcome(file_id, row.relpath, True, str(row.state), state, note, message)
                )
                continue
            except StaleState:
                problem = "its state changed meanwhile; try again"
        out.append(
            Outcome(
                file_id,
                row.relpath,
                False,
                str(row.state),
                None,
                problem,
                f"{_named(row)} {problem}"
                if problem.startswith("is ")
                else f"file {file_id}: {problem}",
            )
        )
    return out


def describe(engine: Engine, target: str) -> dict[str, Any] | None:
    """Row, timeline and parts of the file named by id or path (newest match for a path)."""
    with db.read_tx(engine) as conn:
        if target.isdigit():
            row = conn.execute(select(files).where(files.c.id == int(target))).one_or_none()
        else:
            row = conn.execute(
                select(files)
                .where(or_(files.c.relpath == target, files.c.source_path == target))
                .order_by(files.c.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return None
        timeline = conn.execute(
            select(events).where(events.c.file_id == row.id).order_by(events.c.id)
        ).all()
        sent = conn.execute(
            select(parts).where(parts.c.file_id == row.id).order_by(parts.c.part_number)
        ).all()
    doc = file_dict(row)
    doc["mtime_ns"] = row.mtime_ns
    doc["content_type"] = row.content_type
    doc["upload_id"] = row.upload_id
    doc["part_size"] = row.part_size
    doc["cancel_requested"] = bool(row.cancel_requested)
    doc["timeline"] = [
        {
            "at": iso_utc(e.at, timespec="milliseconds"),
            "from": e.from_state,
            "to": e.to_state,
            "code": e.code,
            "detail": e.detail,
        }
        for e in timeline
    ]
    doc["parts"] = [{"part_number": p.part_number, "size": p.size, "etag": p.etag} for p in sent]
    return doc


def render_show(doc: dict[str, Any], console: Console | None = None) -> None:
    con = console or Console(width=100)
    con.print(
        f"[bold]file {doc['id']}[/] {for_markup(doc['inbox'])}/{for_markup(doc['path'])}: "
        f"[bold]{for_markup(doc['state'])}[/]",
        emoji=False,
    )
    for key in (
        "source_path",
        "size",
        "sha256",
        "detected_type",
        "content_type",
        "destination",
        "priority",
        "key",
        "attempts",
        "reason_code",
        "reason",
        "original_id",
        "batch_id",
        "post_path",
        "upload_id",
    ):
        if doc.get(key) not in (None, ""):
            con.print(Text(f"  {key:14} {shown(doc[key])}"), overflow="fold")
    con.print("[bold]timeline[/]")
    for e in doc["timeline"]:
        move = f"{e['from'] or ''} -> {e['to']}" if e["to"] else (e["code"] or "")
        con.print(Text(f"  {e['at']}  {shown(move):24} {shown(e['detail'])}"), overflow="fold")
    if doc["parts"]:
        total = sum(p["size"] for p in doc["parts"])
        con.print(f"[bold]parts sent[/]: {len(doc['parts'])} ({total} bytes)")
