"""``/files`` (search by name, SHA-256 prefix, state, inbox, reason; open by id) and
``/files/<id>`` (the row, the timeline, the parts sent, the reason and its hint, the
extracted metadata: ``ingestd show``'s content). See docs/ARCHITECTURE.md, "The dashboard"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingestd.control import describe
from ingestd.page.actions import Actions, button
from ingestd.page.html import Html, fmt_count, fmt_time, tag
from ingestd.page.layout import card, not_found, page, table
from ingestd.page.queries import SEARCH_LIMIT_MAX, Search, search
from ingestd.page.source import PageSource
from ingestd.redact import redact_text
from ingestd.report import advice_for
from ingestd.sizes import iec
from ingestd.states import TERMINAL, FileState
from ingestd.timefmt import iso_utc

FIELD_MAX = 200  # characters kept of a search field


def parse_search(query: Mapping[str, str]) -> Search:
    """The search a query string asks for (fields trimmed and bounded)."""

    def field(name: str) -> str:
        return query.get(name, "").strip()[:FIELD_MAX]

    limit = field("limit")
    return Search(
        name=field("name"),
        sha256=field("sha256").lower(),
        state=field("state"),
        inbox=field("inbox"),
        reason=field("reason"),
        limit=min(int(limit), SEARCH_LIMIT_MAX) if limit.isdigit() and int(limit) > 0 else 100,
    )


def _select(name: str, label: str, options: list[str], chosen: str) -> Html:
    return tag(
        "div",
        tag("label", label, for_=f"f-{name}"),
        tag(
            "select",
            tag("option", "any", value=""),
            *(tag("option", o, value=o, selected=o == chosen) for o in options),
            name=name,
            id=f"f-{name}",
        ),
        class_="field",
    )


def _input(name: str, label: str, value: str, **attrs: Any) -> Html:
    return tag(
        "div",
        tag("label", label, for_=f"f-{name}"),
        tag("input", name=name, id=f"f-{name}", value=value, **attrs),
        class_="field",
    )


def search_form(query: Search, inboxes: list[str]) -> Html:
    return tag(
        "div",
        tag(
            "form",
            _input("id", "File id", "", inputmode="numeric", pattern="[0-9]*", size=8),
            tag("button", "Open", type="submit"),
            action="/files",
            method="get",
            class_="inline",
            role="search",
            aria_label="open a file by id",
        ),
        tag(
            "form",
            _input("name", "Name contains", query.name, type="search", maxlength=FIELD_MAX),
            _input(
                "sha256",
                "SHA-256 starts with",
                query.sha256,
                maxlength=64,
                autocomplete="off",
                spellcheck="false",
            ),
            _select("state", "State", [s.value for s in FileState], query.state),
            _select("inbox", "Inbox", inboxes, query.inbox),
            tag("input", type="hidden", name="reason", value=query.reason) if query.reason else "",
            tag("button", "Search", type="submit"),
            action="/files",
            method="get",
            class_="inline",
            role="search",
            aria_label="search files",
        ),
        class_="forms",
    )


def results_table(rows: list[Any], *, now: float) -> Html:
    body = [
        tag(
            "tr",
            tag("td", tag("a", f"#{r.id}", href=f"/files/{r.id}")),
            tag("td", tag("span", r.state, class_=f"st st-{r.state}")),
            tag("td", r.inbox),
            tag("td", tag("a", r.relpath, href=f"/files/{r.id}", class_="name")),
            tag("td", iec(r.size), class_="n"),
            tag("td", fmt_time(r.updated_at, now=now)),
            tag("td", r.reason_code or r.key or ""),
        )
        for r in rows
    ]
    return table(
        ["id", "state", "inbox", "path", "size", "updated", "reason / key"],
        body,
        caption="files found",
    )


def render_search(source: PageSource, query: Mapping[str, str]) -> tuple[int, bytes, str | None]:
    """(status, page, redirect): an id asked for opens that file's page."""
    wanted = query.get("id", "").strip().lstrip("#")
    if wanted.isdigit():
        return 303, b"", f"/files/{int(wanted)}"
    now = source.now()
    wanted_search = parse_search(query)
    inboxes = sorted(i.name for i in source.settings.inboxes)
    parts = [card("Find a file", search_form(wanted_search, inboxes), id="search")]
    problems = wanted_search.problems()
    if problems:
        parts.append(card("Results", *(tag("p", p, class_="bad") for p in problems)))
    elif not wanted_search.empty:
        with source.reader() as reader:
            rows = search(reader, wanted_search)
        note = f"{fmt_count(len(rows))} file(s), newest first" + (
            f" (the first {wanted_search.limit})" if len(rows) >= wanted_search.limit else ""
        )
        parts.append(
            card(
                "Results",
                tag("p", note, class_="muted"),
                results_table(rows, now=now) if rows else "",
                id="results",
            )
        )
    return 200, page(title="Files", current="/files", body=Html("".join(parts))), None


def render_file(
    source: PageSource, file_id: int, *, actions: Actions | None = None
) -> tuple[int, bytes]:
    doc = describe(source.engine, str(file_id))
    if doc is None:
        return 404, not_found(f"There is no file {file_id}.")
    body = file_body(doc, actions=actions)
    return 200, page(title=f"File {file_id}", current="/files", body=body, live=True)


def file_body(doc: dict[str, Any], *, actions: Actions | None = None) -> Html:
    state = doc["state"]
    head = [
        tag(
            "p",
            tag("span", state, class_=f"st st-{state}"),
            " ",
            tag("strong", doc["inbox"]),
            "/",
            tag("span", doc["path"], class_="name"),
        ),
    ]
    if state in (FileState.FAILED.value, FileState.REJECTED.value):
        action, hint = advice_for(state, doc["reason_code"])
        head.append(
            tag(
                "div",
                tag(
                    "p",
                    tag("strong", "Reason: "),
                    doc["reason_code"] or "",
                    " — ",
                    redact_text(doc["reason"] or ""),
                ),
                tag("p", tag("strong", f"What to do ({action}): "), hint.format(id=doc["id"])),
                class_="problem",
            )
        )
    if state == FileState.FAILED.value:
        head.append(button(actions, f"/files/{doc['id']}/retry", "Retry this file"))
    elif state not in {s.value for s in TERMINAL}:
        head.append(button(actions, f"/files/{doc['id']}/cancel", "Cancel this file"))
    if state == FileState.UPLOADING.value and doc["size"]:
        head.append(
            tag(
                "p",
                tag("progress", value=doc["bytes_sent"], max=doc["size"], aria_label="bytes sent"),
                f" {iec(doc['bytes_sent'])} of {iec(doc['size'])}",
            )
        )
    fields = [
        ("id", doc["id"]),
        ("inbox", doc["inbox"]),
        ("path", doc["path"]),
        ("source path", doc["source_path"]),
        ("state", state),
        ("size", f"{iec(doc['size'])} ({fmt_count(doc['size'])} bytes)"),
        ("SHA-256", doc["sha256"]),
        ("detected type", doc["detected_type"]),
        ("content type", doc["content_type"]),
        ("modified (mtime)", iso_utc(doc["mtime_ns"] / 1e9) if doc["mtime_ns"] else None),
        ("destination", doc["destination"]),
        ("object key", doc["key"]),
        ("attempts", doc["attempts"]),
        ("next attempt", iso_utc(doc["next_attempt_at"])),
        ("batch", doc["batch_id"]),
        ("duplicate of", doc["original_id"]),
        ("discovered", iso_utc(doc["discovered_at"])),
        ("queued", iso_utc(doc["queued_at"])),
        ("upload started", iso_utc(doc["started_at"])),
        ("finished", iso_utc(doc["finished_at"])),
        ("upload time", f"{doc['upload_seconds']:.1f} s" if doc["upload_seconds"] else None),
        ("post-action path", doc["post_path"]),
        ("multipart upload id", doc["upload_id"]),
        ("part size", iec(doc["part_size"]) if doc["part_size"] else None),
        ("cancel requested", "yes" if doc["cancel_requested"] else None),
    ]
    links = {"batch": f"/batches/{doc['batch_id']}", "duplicate of": f"/files/{doc['original_id']}"}
    rows = [
        tag(
            "tr",
            tag("th", name, scope="row"),
            tag(
                "td",
                tag("a", value, href=links[name]) if name in links else value,
                class_="name" if "path" in name or name == "object key" else None,
            ),
        )
        for name, value in fields
        if value not in (None, "")
    ]
    timeline = [
        tag(
            "tr",
            tag("td", e["at"]),
            tag("td", e["from"] or ""),
            tag("td", e["to"] or ""),
            tag("td", e["code"] or ""),
            tag("td", redact_text(e["detail"] or ""), class_="name"),
        )
        for e in doc["timeline"]
    ]
    parts_rows = [
        tag(
            "tr",
            tag("td", p["part_number"], class_="n"),
            tag("td", iec(p["size"]), class_="n"),
            tag("td", p["etag"], class_="name"),
        )
        for p in doc["parts"]
    ]
    out = [
        card("File", *head, tag("table", *rows, class_="report"), id="file"),
        card(
            "Timeline",
            table(["at (UTC)", "from", "to", "code", "detail"], timeline, caption="timeline")
            if timeline
            else tag("p", "no events", class_="muted"),
            id="timeline",
        ),
        card(
            "Parts sent",
            table(["part", "size", "ETag"], parts_rows, caption="parts")
            if parts_rows
            else tag("p", "no multipart parts recorded", class_="muted"),
            id="parts",
        ),
    ]
    return Html("".join(out))
