"""``/batches`` (the newest batches with counts, progress and duration) and ``/batches/<id>``
(that batch's report: the content of ``ingestd report --batch <id>``). See
docs/ARCHITECTURE.md, "The dashboard"."""

from __future__ import annotations

from typing import Any

from ingestd.page.html import Html, fmt_count, fmt_duration, fmt_time, tag
from ingestd.page.layout import card, not_found, page, table
from ingestd.page.queries import BatchCounts, recent_batches
from ingestd.page.source import PageSource
from ingestd.redact import redact_text
from ingestd.report import Selection, build
from ingestd.sizes import iec


def batch_open(batch: BatchCounts, *, now: float, idle_seconds: float) -> bool:
    """As ``ingestd batches`` says: open until closed, or until idle for batch_idle_seconds."""
    return batch.closed_at is None and now - batch.last_arrival_at <= idle_seconds


def duration(batch: BatchCounts, *, now: float) -> float:
    """From the batch's first arrival to its last file's end; still running: until now."""
    end = batch.last_finished_at if batch.pending == 0 and batch.last_finished_at else now
    return max(0.0, end - batch.opened_at)


def progress(done: int, total: int, *, label: str) -> Html:
    return tag("progress", f"{done} of {total}", value=done, max=max(1, total), aria_label=label)


def batches_table(batches: list[BatchCounts], *, now: float, idle_seconds: float) -> Html:
    rows = []
    for b in batches:
        received = b.received
        done = received - b.pending
        status = "open" if batch_open(b, now=now, idle_seconds=idle_seconds) else "closed"
        rows.append(
            tag(
                "tr",
                tag("td", tag("a", f"#{b.id}", href=f"/batches/{b.id}")),
                tag("td", b.inbox),
                tag("td", fmt_time(b.opened_at, now=now)),
                tag("td", status),
                *(
                    tag("td", fmt_count(n), class_="n")
                    for n in (
                        received,
                        b.counts.get("uploaded", 0),
                        b.counts.get("duplicate", 0),
                        b.counts.get("rejected", 0),
                        b.counts.get("failed", 0),
                    )
                ),
                tag(
                    "td",
                    progress(done, received, label=f"batch {b.id}: {done} of {received} done"),
                    " ",
                    tag("span", f"{done}/{received}", class_="muted"),
                ),
                tag("td", fmt_duration(duration(b, now=now))),
                tag("td", tag("a", "report", href=f"/batches/{b.id}")),
            )
        )
    return table(
        [
            "batch",
            "inbox",
            "opened",
            "status",
            "received",
            "uploaded",
            "duplicate",
            "rejected",
            "failed",
            "progress",
            "duration",
            "",
        ],
        rows,
        caption="batches, newest first",
    )


def section(batches: list[BatchCounts], *, now: float, idle_seconds: float) -> Html:
    if not batches:
        return card("Batches", tag("p", "No batches yet.", class_="muted"), id="batches")
    return card("Batches", batches_table(batches, now=now, idle_seconds=idle_seconds), id="batches")


def render_list(source: PageSource) -> bytes:
    now = source.now()
    with source.reader() as reader, reader.snapshot():
        batches = recent_batches(reader, limit=100)
    body = section(batches, now=now, idle_seconds=source.settings.batch_idle_seconds)
    return page(title="Batches", current="/batches", body=body, live=True)


def report_doc(source: PageSource, batch_id: int) -> dict[str, Any] | None:
    """``ingestd report --batch <id> --json``'s document; None for a batch that does not exist."""
    with source.reader() as reader:
        found = reader.rows("SELECT id FROM batches WHERE id = ?", (batch_id,))
    if not found:
        return None
    return build(source.engine, Selection(batch=batch_id), now=source.now())


def render_report(source: PageSource, batch_id: int) -> tuple[int, bytes]:
    doc = report_doc(source, batch_id)
    if doc is None:
        return 404, not_found(f"There is no batch {batch_id}.")
    return 200, page(
        title=f"Batch {batch_id}", current="/batches", body=report_body(doc, batch_id), live=True
    )


def report_body(doc: dict[str, Any], batch_id: int) -> Html:
    """The report's content as ``report.render`` prints it, as HTML."""
    reasons = ", ".join(f"{code} {n}" for code, n in doc["rejected_by_reason"].items())
    lines = [
        ("received", doc["received"], iec(doc["bytes"]["received"])),
        ("uploaded", doc["uploaded"], iec(doc["bytes"]["uploaded"])),
        ("duplicates", doc["duplicates"], ""),
        ("rejected", doc["rejected"], reasons),
        ("failed", doc["failed"], ""),
        ("cancelled", doc["cancelled"], ""),
        ("pending", doc["pending"], ""),
    ]
    done = doc["received"] - doc["pending"]
    summary = [
        tag(
            "table",
            *(
                tag(
                    "tr",
                    tag("th", name, scope="row"),
                    tag("td", fmt_count(n), class_="n"),
                    tag("td", extra, class_="muted"),
                )
                for name, n, extra in lines
            ),
            class_="report",
        ),
        tag(
            "p",
            progress(done, doc["received"], label=f"{done} of {doc['received']} done"),
            f" {done} of {doc['received']} done",
        ),
    ]
    if doc["first_arrival"]:
        summary.append(
            tag("p", f"first arrival {doc['first_arrival']}, last {doc['last_arrival']}")
        )
    if doc["time_to_finish_seconds"] is not None:
        rate = doc["throughput_bytes_per_second"]
        summary.append(
            tag(
                "p",
                f"finished in {fmt_duration(doc['time_to_finish_seconds'])}"
                + (f" ({iec(rate)}/s)" if rate else ""),
            )
        )
    summary.append(
        tag(
            "p",
            "The same as ",
            tag("code", f"ingestd report --batch {batch_id}"),
            " · ",
            tag("a", "JSON", href=f"/batches/{batch_id}.json"),
        )
    )
    parts = [card("Report", *summary, id="report")]
    if doc["problems"]:
        rows = [
            tag(
                "tr",
                tag("td", tag("a", f"#{p['id']}", href=f"/files/{p['id']}")),
                tag("td", f"{p['inbox']}/", tag("span", p["path"], class_="name")),
                tag("td", tag("span", p["state"], class_=f"st st-{p['state']}")),
                tag("td", f"{p['reason_code'] or ''}: {_first_line(p['reason'])}"),
                tag("td", f"{p['action']}: {p['hint']}"),
            )
            for p in doc["problems"]
        ]
        more = " (the first 1,000)" if doc["problems_truncated"] else ""
        parts.append(
            card(
                f"Needs attention{more}",
                table(["id", "file", "state", "reason", "do"], rows, caption="needs attention"),
                id="attention",
            )
        )
    return Html("".join(parts))


def _first_line(text: str | None) -> str:
    """A reason's first line, with any credential an error text quotes masked."""
    return redact_text((text or "").splitlines()[0]) if text else ""
