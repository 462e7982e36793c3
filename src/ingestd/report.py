"""``ingestd report`` and ``ingestd batches``: how many were processed, and what needs a human.

The text views show names and reasons through ``untrusted.shown``, as plain text (never rich
markup); the JSON documents keep exact values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine, Select, and_, case, func, select

from ingestd.catalog import db, queries
from ingestd.catalog.schema import batches, files
from ingestd.catalog.shapes import file_dict
from ingestd.states import FileState
from ingestd.timefmt import iso_utc
from ingestd.untrusted import for_markup, shown

PROBLEM_LIMIT = 1000
TEXT_PROBLEMS = 50  # the text view lists this many; --json lists up to PROBLEM_LIMIT

# What an operator should do about each outcome: "retry", "fix" or "ignore", and how.
ADVICE: dict[str, tuple[str, str]] = {
    "failed": ("retry", "ingestd retry {id} (or ingestd retry --failed)"),
    "empty": ("fix", "the scan or copy produced an empty file: scan or send it again"),
    "too_small": ("fix", "smaller than min_size_bytes: check the source, send it again"),
    "too_large": ("fix", "larger than max_size_mib: raise the limit or split the file"),
    "type_not_allowed": ("ignore", "not an accepted type; add it to allowed_types if wanted"),
    "extension_mismatch": ("fix", "content does not match its name: check it, rename, resend"),
    "truncated": ("fix", "incomplete (interrupted scan or upload): send it again"),
    "corrupt": ("fix", "damaged file: produce it again from the original"),
    "unreadable": ("fix", "permissions: make it readable by ingestd, then drop it again"),
    "infected": ("ignore", "antivirus found a threat: delete it, do not resend"),
}


@dataclass(frozen=True)
class Selection:
    """Which files a report covers."""

    batch: int | None = None
    since: float | None = None
    inbox: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.batch is not None:
            query = query.where(files.c.batch_id == self.batch)
        if self.since is not None:
            query = query.where(files.c.discovered_at >= self.since)
        if self.inbox is not None:
            query = query.where(files.c.inbox == self.inbox)
        return query


def latest_batch(engine: Engine, inbox: str | None = None) -> int | None:
    """The newest batch id (of one inbox, if given)."""
    query = select(func.max(batches.c.id))
    if inbox is not None:
        query = query.where(batches.c.inbox == inbox)
    with db.read_tx(engine) as conn:
        value = conn.execute(query).scalar_one_or_none()
    return int(value) if value is not None else None


def advice_for(state: str, reason_code: str | None) -> tuple[str, str]:
    """(action, hint) for one problem file (pure)."""
    if state == FileState.FAILED.value:
        return ADVICE["failed"]
    codes = (reason_code or "").split(",")
    for code in codes:
        if code in ADVICE:
            return ADVICE[code]
    return ("fix", "see the reason")


def build(engine: Engine, selection: Selection, *, now: float | None = None) -> dict[str, Any]:
    """The report as a JSON-ready document (schema documented in the README)."""
    now = time.time() if now is None else now
    sel = selection.apply
    with db.read_tx(engine) as conn:
        per_state = _per_state(conn, selection)
        # One aggregate per statement: SQLite answers a lone min()/max() from an index.
        span = tuple(
            conn.execute(sel(select(agg))).scalar_one()
            for agg in (
                func.min(files.c.discovered_at),
                func.max(files.c.discovered_at),
                func.max(files.c.finished_at),
            )
        )
        reasons = conn.execute(
            sel(
                select(files.c.reason_code, func.count())
                .where(files.c.state == FileState.REJECTED.value)
                .group_by(files.c.reason_code)
            )
        ).all()
        problems = conn.execute(
            sel(
                select(files)
                .where(files.c.state.in_([FileState.FAILED.value, FileState.REJECTED.value]))
                .order_by(files.c.id)
                .limit(PROBLEM_LIMIT)
            )
        ).all()
    counts = {s.value: 0 for s in FileState}
    sizes = {s.value: 0 for s in FileState}
    for state, n, size in per_state:
        counts[state] += int(n)
        sizes[state] += int(size)
    return _document(selection, counts, sizes, span, reasons, problems, now)


def _per_state(conn: Connection, selection: Selection) -> Sequence[tuple[str, int, int]]:
    """(state, files, bytes) rows of the selection. The whole catalog or one inbox is read from
    the kept totals (a few rows); a batch or a time span is counted from its file rows."""
    if selection.batch is None and selection.since is None:
        return [
            (t.state, t.files, t.bytes)
            for t in queries.totals(conn)
            if selection.inbox is None or t.inbox == selection.inbox
        ]
    query = select(files.c.state, func.count(), func.coalesce(func.sum(files.c.size), 0))
    return [tuple(r) for r in conn.execute(selection.apply(query.group_by(files.c.state)))]


def _document(
    selection: Selection,
    counts: dict[str, int],
    sizes: dict[str, int],
    span: Any,
    reasons: Sequence[Any],
    problems: Sequence[Any],
    now: float,
) -> dict[str, Any]:
    first, last, finished = span
    pending = counts["discovered"] + counts["queued"] + counts["uploading"]
    done_at = finished if pending == 0 and finished else None
    elapsed = (done_at - first) if done_at and first else None
    by_reason: dict[str, int] = {}
    for codes, n in reasons:
        for code in (codes or "unknown").split(","):
            by_reason[code] = by_reason.get(code, 0) + int(n)
    problem_rows = []
    for row in problems:
        item = file_dict(row)
        action, hint = advice_for(item["state"], item["reason_code"])
        item["action"] = action
        item["hint"] = hint.format(id=item["id"])
        problem_rows.append(item)
    return {
        "selection": {
            "batch": selection.batch,
            "since": iso_utc(selection.since),
            "inbox": selection.inbox,
        },
        "generated_at": iso_utc(now),
        "received": sum(counts.values()),
        "uploaded": counts["uploaded"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "pending": pending,
        "bytes": {"received": sum(sizes.values()), "uploaded": sizes["uploaded"]},
        "first_arrival": iso_utc(first),
        "last_arrival": iso_utc(last),
        "finished_at": iso_utc(done_at),
        "time_to_finish_seconds": round(elapsed, 1) if elapsed is not None else None,
        "throughput_bytes_per_second": (
            round(sizes["uploaded"] / elapsed) if elapsed and elapsed > 0 else None
        ),
        "problems": problem_rows,
        "problems_truncated": len(problem_rows) >= PROBLEM_LIMIT,
    }


def list_batches(
    engine: Engine,
    *,
    inbox: str | None = None,
    limit: int = 50,
    idle_seconds: float = 120.0,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Newest batches first, each with its counts per outcome."""
    now = time.time() if now is None else now
    counted = {s.value: func.sum(case((files.c.state == s.value, 1), else_=0)) for s in FileState}
    query = (
        select(
            batches,
            func.count(files.c.id).label("received"),
            func.coalesce(func.sum(files.c.size), 0).label("bytes"),
            *(expr.label(f"n_{state}") for state, expr in counted.items()),
        )
        .select_from(batches.outerjoin(files, and_(files.c.batch_id == batches.c.id)))
        .group_by(batches.c.id)
        .order_by(batches.c.id.desc())
        .limit(limit)
    )
    if inbox is not None:
        query = query.where(batches.c.inbox == inbox)
    with db.read_tx(engine) as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        closed = r.closed_at or (
            r.last_arrival_at + idle_seconds if now - r.last_arrival_at > idle_seconds else None
        )
        counts = {state: int(getattr(r, f"n_{state}") or 0) for state in counted}
        out.append(
            {
                "id": r.id,
                "inbox": r.inbox,
                "opened_at": iso_utc(r.opened_at),
                "last_arrival_at": iso_utc(r.last_arrival_at),
                "closed_at": iso_utc(closed),
                "open": closed is None,
                "received": int(r.received),
                "bytes": int(r.bytes),
                "uploaded": counts["uploaded"],
                "duplicate": counts["duplicate"],
                "rejected": counts["rejected"],
                "failed": counts["failed"],
                "pending": counts["discovered"] + counts["queued"] + counts["uploading"],
            }
        )
    return out


def render(doc: dict[str, Any], console: Console | None = None) -> None:
    """A report a manager can read."""
    con = console or Console(width=100)
    sel = doc["selection"]
    scope = ", ".join(f"{k} {for_markup(v)}" for k, v in sel.items() if v) or "all files"
    con.print(f"[bold]ingestd report[/] ({scope}), generated {doc['generated_at']}", emoji=False)
    con.print(f"  received   {doc['received']:>7}  ({_mib(doc['bytes']['received'])})")
    con.print(f"  uploaded   {doc['uploaded']:>7}  ({_mib(doc['bytes']['uploaded'])})")
    con.print(f"  duplicates {doc['duplicates']:>7}")
    reasons = ", ".join(f"{shown(k)} {v}" for k, v in doc["rejected_by_reason"].items())
    con.print(Text(f"  rejected   {doc['rejected']:>7}" + (f"  ({reasons})" if reasons else "")))
    con.print(f"  failed     {doc['failed']:>7}")
    con.print(f"  pending    {doc['pending']:>7}")
    if doc["first_arrival"]:
        con.print(f"  first arrival {doc['first_arrival']}, last {doc['last_arrival']}")
    if doc["time_to_finish_seconds"] is not None:
        rate = doc["throughput_bytes_per_second"]
        con.print(
            f"  finished in {doc['time_to_finish_seconds']:.0f}s"
            + (f" ({_mib(rate)}/s)" if rate else "")
        )
    if doc["problems"]:
        listed = doc["problems"][:TEXT_PROBLEMS]
        table = Table(title="needs attention", show_edge=False)
        for col in ("id", "file", "state", "reason", "do"):
            table.add_column(col, overflow="fold")
        for p in listed:
            reason = (p["reason"] or "").splitlines()[0] if p["reason"] else ""
            table.add_row(
                str(p["id"]),
                Text(f"{shown(p['inbox'])}/{shown(p['path'])}"),
                Text(shown(p["state"])),
                Text(f"{shown(p['reason_code'])}: {shown(reason)}"),
                Text(f"{p['action']}: {p['hint']}"),
            )
        con.print(table)
        more = doc["rejected"] + doc["failed"] - len(listed)
        if more > 0:
            con.print(
                f"... and {more} more: ingestd report --json, or ingestd files "
                "--state failed --state rejected"
            )


def render_batches(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    con = console or Console(width=100)
    table = Table(show_edge=False)
    for col in (
        "batch",
        "inbox",
        "opened",
        "status",
        "received",
        "uploaded",
        "dup",
        "rejected",
        "failed",
        "pending",
    ):
        table.add_column(col)
    for b in rows:
        table.add_row(
            str(b["id"]),
            Text(shown(b["inbox"])),
            b["opened_at"] or "",
            "open" if b["open"] else "closed",
            str(b["received"]),
            str(b["uploaded"]),
            str(b["duplicate"]),
            str(b["rejected"]),
            str(b["failed"]),
            str(b["pending"]),
        )
    con.print(table)


def _mib(n: float | None) -> str:
    return f"{(n or 0) / 1048576:.1f} MiB"
