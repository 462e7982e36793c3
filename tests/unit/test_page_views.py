"""The dashboard's views over a real SQLite catalog (every migration, rows as the daemon writes
them): what a person reads on each page, and the reads behind it (page/queries.py)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.page import batches, files, overview, problems, queries
from ingestd.page.queries import Search, Window
from ingestd.page.source import PageSource
from ingestd.report import Selection, build
from ingestd.untrusted import shown
from tests import pages

# Noon, local time: "today" and the charts' windows do not depend on when the test runs.
NOW = overview.local_midnight(1_800_000_000.0) + 12 * 3600 + 17.0


@pytest.fixture
def source(tmp_path: Path) -> Iterator[PageSource]:
    catalog, src = pages.open_source(pages.settings_for(tmp_path, ["scanner", "office"]), now=NOW)
    yield src
    catalog.close()


def text_of(body: bytes) -> str:
    """A page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    plain = re.sub(r"<[^>]+>", " ", body.decode())
    return re.sub(r"\s+", " ", html.unescape(plain))


def section(body: bytes, id: str) -> str:
    """The text of one ``<section id=...>`` of a page."""
    doc = body.decode()
    start = doc.index(f'id="{id}"')
    return text_of(doc[start : doc.index("</section>", start)].encode())


# ---------------------------------------------------------------- today and the charts


def test_today_counts_arrivals_since_midnight_and_what_is_stored(source: PageSource) -> None:
    e = source.engine
    for _ in range(3):
        pages.add_file(e, at=NOW - 600)  # uploaded
    pages.add_file(e, at=NOW - 500, state="duplicate")
    pages.add_file(e, at=NOW - 400, state="rejected", reason_code="truncated", reason="cut")
    pages.add_file(e, at=NOW - 300, state="queued")
    pages.add_file(e, at=NOW - 13 * 3600)  # yesterday: not today's arrival
    # arrived yesterday, uploaded today: counted as "uploaded today", not as arrived today
    pages.add_file(e, at=NOW - 13 * 3600, finished_at=NOW - 3600)
    today = section(overview.render(source, {}), "today")
    assert "6 arrived today" in today
    assert "4 safely stored 3 uploaded + 1 already stored (duplicates)" in today
    assert "1 still on the way" in today and "1 rejected" in today and "0 failed" in today
    assert "4 uploaded today" in today


def test_charts_put_each_file_in_its_minute_and_hour_per_inbox(source: PageSource) -> None:
    e = source.engine
    hour = Window.ending_at(NOW, step=60, slots=60)
    minute_start = hour.start + 50 * 60
    pages.add_file(e, at=minute_start + 1, inbox="scanner", size=1000, finished_at=NOW - 5)
    pages.add_file(e, at=minute_start + 59, inbox="scanner", size=2000, finished_at=NOW - 5)
    pages.add_file(e, at=minute_start + 61, inbox="office", size=4000, finished_at=NOW - 5)
    pages.add_file(e, at=NOW - 3 * 86400, inbox="office", size=8000)  # in the week only
    pages.add_file(e, at=NOW - 8 * 86400, inbox="office", size=9000)  # in neither
    pages.add_file(e, at=NOW - 100, state="rejected", reason_code="empty", reason="empty")
    with source.reader() as reader:
        arrived = queries.arrivals(reader, hour)
        uploaded = queries.uploads(reader, hour)
        week = queries.arrivals(reader, Window.ending_at(NOW, step=3600, slots=168))
    assert sorted((s.inbox, s.slot, s.files, s.bytes) for s in arrived) == [
        ("office", 51, 1, 4000),
        ("scanner", 50, 2, 3000),
        ("scanner", 57, 1, 200_000),  # the rejected file arrived; it is not an upload
    ]
    assert sorted((s.inbox, s.slot, s.files) for s in uploaded) == [
        ("office", 59, 1),
        ("scanner", 59, 2),
    ]
    assert sum(s.files for s in week) == 5 and {s.inbox for s in week} == {"scanner", "office"}
    charts = overview.render(source, {})
    assert "Arrived per minute, last hour: 4 files" in text_of(charts)
    assert "Arrived per hour, last 7 days: 5 files" in text_of(charts)
    # one bar segment per (slot, inbox), its tooltip naming both
    assert (
        charts.count(b'<rect class="s') == 3 + 2 + 3 + 3
    )  # the week's uploads: the 3-day-old file too
    assert re.search(rb"<title>office \xc2\xb7 \d\d:\d\d: 1 files, 3\.9 KiB</title>", charts)


def test_charts_can_show_bytes_instead_of_files(source: PageSource) -> None:
    pages.add_file(source.engine, at=NOW - 30, size=3 * 1024 * 1024)
    body = text_of(overview.render(source, {"chart": "bytes"}))
    assert "Showing bytes. Show files" in body


# ---------------------------------------------------------------- the queue now


def test_the_queue_shows_the_file_in_flight_and_the_next_in_claim_order(
    source: PageSource,
) -> None:
    e = source.engine
    current = pages.add_file(
        e,
        at=NOW - 60,
        state="uploading",
        relpath="big.tiff",
        size=100 * 1024 * 1024,
        bytes_sent=25 * 1024 * 1024,
        started_at=NOW - 10,
    )
    pages.add_lane(e, now=NOW, current_file_id=current)
    first = pages.add_file(e, at=NOW - 50, state="queued", relpath="first.pdf")
    later = pages.add_file(
        e,
        at=NOW - 49,
        state="queued",
        relpath="retry-later.pdf",
        next_attempt_at=NOW + 90,
        attempts=2,
    )
    second = pages.add_file(e, at=NOW - 48, state="queued", relpath="second.pdf")
    body = overview.render(source, {})
    queue = section(body, "queue")
    assert "Uploading big.tiff" in queue
    assert "25.0 MiB of 100.0 MiB (25.0%)" in queue and "2.5 MiB/s" in queue
    assert re.search(r"1 first\.pdf .* 2 second\.pdf", queue)
    assert "Waiting for a retry: retry-later.pdf at" in queue
    with source.reader() as reader:
        due = queries.next_due(reader, "main", now=NOW, limit=10, aging_seconds=3600)
    assert [r.id for r in due] == [first, second] and later not in [r.id for r in due]
    assert f'href="/files/{current}"' in body.decode()
    assert '<progress value="26214400" max="104857600"' in body.decode()


def test_the_next_files_follow_priority_and_aging_as_the_claim_does(
    source: PageSource,
) -> None:
    e = source.engine
    old = pages.add_file(e, at=NOW - 7200, state="queued", relpath="waited-2h.pdf")
    low = pages.add_file(e, at=NOW - 60, state="queued", relpath="low.pdf")
    high = pages.add_file(e, at=NOW - 50, state="queued", relpath="high.pdf", priority=5)
    higher = pages.add_file(e, at=NOW - 40, state="queued", relpath="higher.pdf", priority=9)
    with source.reader() as reader:
        aged = queries.next_due(reader, "main", now=NOW, limit=10, aging_seconds=3600)
        plain = queries.next_due(reader, "main", now=NOW, limit=10, aging_seconds=0)
    # the file that waited past aging_minutes goes first, then priority, then first come
    assert [r.id for r in aged] == [old, higher, high, low]
    assert [r.id for r in plain] == [higher, high, old, low]
    queue = section(overview.render(source, {}), "queue")
    assert re.search(r"1 waited-2h\.pdf scanner 0 .* 2 higher\.pdf scanner 9 .* 3 high\.pdf", queue)


def test_every_file_in_flight_is_shown(source: PageSource) -> None:
    e = source.engine
    for name in ("one.bin", "two.bin"):
        pages.add_file(
            e,
            at=NOW - 60,
            state="uploading",
            relpath=name,
            size=1000,
            bytes_sent=500,
            started_at=NOW - 10,
        )
    body = overview.render(source, {}).decode()
    queue = section(body.encode(), "queue")
    assert "Uploading one.bin" in queue and "Uploading two.bin" in queue
    assert body.count('id="current-file"') == 1 and body.count("<progress") >= 2


def test_a_cooldown_is_a_countdown_and_the_backlog_has_an_eta(source: PageSource) -> None:
    e = source.engine
    pages.add_lane(e, now=NOW, cooldown_until=NOW + 4.0)
    for i in range(3):  # uploaded in the last 15 minutes: 3 MiB over 900 s
        pages.add_file(e, at=NOW - 300, size=1024 * 1024, finished_at=NOW - 200 + i)
    pages.add_file(e, at=NOW - 10, state="queued", size=900 * 1024)
    body = overview.render(source, {})
    assert 'data-countdown="4"' in body.decode()
    assert "cooldown: next file in 4 s" in section(body, "queue")
    # 900 KiB at 3 MiB per 900 s = 264 s
    assert "backlog done in around 12:04:40, 1 files, 900.0 KiB to send" in section(body, "today")
    assert "4 min 24 s backlog" in section(body, "today")


def test_a_busy_gate_shows_why_and_when_it_looks_again(source: PageSource) -> None:
    # the gate was asked 3 s ago (the lane row's time); gate_poll_seconds is 10
    pages.add_lane(source.engine, now=NOW - 3, hold_reason="downstream busy: HTTP 503")
    pages.add_file(source.engine, at=NOW - 10, state="queued")
    body = overview.render(source, {})
    assert "waiting: downstream busy: HTTP 503 · next look in about 7 s" in section(body, "queue")
    assert 'data-countdown="7"' in body.decode()


# ---------------------------------------------------------------- batches


def test_batches_have_counts_progress_duration_and_their_report(source: PageSource) -> None:
    e = source.engine
    batch = pages.add_batch(e, inbox="scanner", opened=NOW - 600, last=NOW - 400)
    for state in ("uploaded", "uploaded", "duplicate", "queued"):
        pages.add_file(e, at=NOW - 600, state=state, batch_id=batch)
    pages.add_file(
        e,
        at=NOW - 500,
        state="rejected",
        batch_id=batch,
        reason_code="corrupt",
        reason="xref table broken",
        relpath="bad.pdf",
    )
    listing = batches.render_list(source)
    row = section(listing, "batches")
    assert re.search(r"#1 scanner \S+ closed 5 2 1 1 0 4 of 5 4/5 10 min 00 s report", row)
    assert '<progress value="4" max="5"' in listing.decode()
    code, report = batches.render_report(source, batch)
    doc = build(source.engine, Selection(batch=batch), now=NOW)
    text = text_of(report)
    assert code == 200 and doc["received"] == 5
    for name, key in (
        ("received", "received"),
        ("uploaded", "uploaded"),
        ("duplicates", "duplicates"),
        ("rejected", "rejected"),
        ("pending", "pending"),
    ):
        assert f"{name} {doc[key]}" in text
    assert "rejected 1 corrupt 1" in text
    assert "bad.pdf" in text and "fix: damaged file: produce it again" in text
    assert f"ingestd report --batch {batch}" in text
    assert batches.render_report(source, 999)[0] == 404


# ---------------------------------------------------------------- files


def test_a_file_page_has_the_row_timeline_parts_and_what_to_do(source: PageSource) -> None:
    e = source.engine
    file_id = pages.add_file(
        e,
        at=NOW - 100,
        state="failed",
        relpath="inv/big.pdf",
        reason_code="attempts",
        reason="gave up after 8 attempts",
        attempts=8,
        upload_id="u-1",
        part_size=8 * 1048576,
    )
    pages.add_parts(e, file_id, [8 * 1048576, 8 * 1048576, 1000])
    code, body = files.render_file(source, file_id)
    page = text_of(body)
    assert code == 200
    assert "Reason: attempts — gave up after 8 attempts" in page
    assert f"What to do (retry): ingestd retry {file_id} (or ingestd retry --failed)" in page
    assert "SHA-256" in page and "detected type pdf" in page and "attempts 8" in page
    assert "discovered queued" in section(body, "timeline").replace("  ", " ")
    assert "1 8.0 MiB" in section(body, "parts") and "3 1000 B" in section(body, "parts")
    assert files.render_file(source, 12345)[0] == 404


def test_search_by_name_sha_prefix_state_inbox_and_reason(source: PageSource) -> None:
    e = source.engine
    a = pages.add_file(e, at=NOW - 9, relpath="Invoice_2026%.pdf", inbox="office")
    b = pages.add_file(
        e,
        at=NOW - 8,
        relpath="invoiceX2026.pdf",
        state="rejected",
        reason_code="empty",
        reason="empty",
    )
    c = pages.add_file(e, at=NOW - 7, relpath="scan.pdf", sha256="ab" * 32)

    def ids(**fields: Any) -> list[int]:
        with source.reader() as reader:
            return [r.id for r in queries.search(reader, Search(**fields))]

    assert ids(name="invoice") == [b, a]  # case-insensitive, newest first
    assert ids(name="_2026%") == [a], "LIKE wildcards in the text are literal"
    assert ids(sha256="abab") == [c] and ids(sha256="ab" * 32) == [c] and ids(sha256="ff") == []
    assert ids(state="rejected") == [b] and ids(inbox="office") == [a]
    assert ids(state="rejected", reason="empty") == [b] and ids(reason="corrupt") == []
    code, body, _ = files.render_search(source, {"name": "invoice"})
    assert code == 200 and "2 file(s), newest first" in section(body, "results")
    assert files.render_search(source, {"id": f"#{c}"})[2] == f"/files/{c}"
    _, bad, _ = files.render_search(source, {"sha256": "xyz"})
    assert "a SHA-256 prefix is hexadecimal digits" in text_of(bad)


# ---------------------------------------------------------------- problems


def test_problems_are_grouped_by_reason_with_hint_and_command(source: PageSource) -> None:
    e = source.engine
    for _ in range(3):
        pages.add_file(e, at=NOW - 9, state="rejected", reason_code="truncated", reason="cut")
    pages.add_file(
        e, at=NOW - 9, state="rejected", inbox="office", reason_code="empty", reason="empty"
    )
    newest = pages.add_file(
        e, at=NOW - 9, state="failed", inbox="office", reason_code="attempts", reason="gave up"
    )
    body = problems.render(source)
    text = section(body, "problems")
    assert "5 files need a look, in 3 group(s)" in text
    assert (
        "failed office attempts 1 retry: ingestd retry <id> (or ingestd retry --failed) "
        f"ingestd retry --failed --inbox office #{newest}"
    ) in text
    assert (
        "rejected scanner truncated 3 fix: incomplete (interrupted scan or upload): send "
        "it again ingestd files --state rejected --inbox scanner"
    ) in text
    assert 'href="/files?state=rejected&amp;inbox=scanner&amp;reason=truncated"' in body.decode()


# ---------------------------------------------------------------- hostile names

HOSTILE = (
    "<script>document.body.dataset.pwned=1</script>.pdf",
    '"><img src=x onerror=alert(1)>.pdf',
    "esc\x1b[31mred.pdf",
    "invoice\u202efdp.exe",
    "caf\udce9.pdf",  # not UTF-8 (a Latin-1 byte)
)


def test_every_view_shows_hostile_names_escaped(source: PageSource) -> None:
    e = source.engine
    batch = pages.add_batch(e, inbox="scanner", opened=NOW - 60, last=NOW - 50)
    ids = [
        pages.add_file(
            e,
            at=NOW - 50,
            relpath=name,
            state="rejected",
            batch_id=batch,
            reason_code="truncated",
            reason=f"bad {name}",
        )
        for name in HOSTILE
    ]
    current = pages.add_file(
        e, at=NOW - 40, relpath=HOSTILE[0], state="uploading", bytes_sent=10, started_at=NOW - 5
    )
    pages.add_file(e, at=NOW - 30, relpath=HOSTILE[1], state="queued")
    pages.add_lane(e, now=NOW, current_file_id=current)
    bodies = [
        overview.render(source, {}),
        files.render_search(source, {"state": "rejected"})[1],
        files.render_search(source, {"name": "<script>"})[1],
        batches.render_report(source, batch)[1],
        problems.render(source),
        *(files.render_file(source, i)[1] for i in ids),
    ]
    for body in bodies:
        doc = body.decode()
        assert "<script>" not in doc and "<img" not in doc and "\x1b" not in doc
        assert "\u202e" not in doc and "\udce9" not in doc
    report = bodies[3].decode()
    assert "&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;.pdf" in report
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.pdf" in report
    for name in HOSTILE[2:]:
        assert html.escape(shown(name)) in report, name
    assert "caf\\xe9.pdf" in report and "invoice\\u202efdp.exe" in report


def test_a_busy_day_fills_the_charts_slot_by_slot(source: PageSource) -> None:
    """3,000 files, one every 28 s: each minute and hour slot counts exactly its arrivals (how
    long the reads take at 1,000,000 rows is the bench's business: bench/catalog_scale.py)."""
    from sqlalchemy import insert

    from ingestd.catalog.schema import files as files_table

    times = [NOW - i * 28.0 for i in range(3000)]
    with source.engine.begin() as conn:
        conn.execute(
            insert(files_table),
            [
                {
                    "inbox": "scanner",
                    "relpath": f"d/{i}.pdf",
                    "source_path": f"/x/{i}",
                    "size": 10,
                    "mtime_ns": 0,
                    "state": "uploaded",
                    "discovered_at": t,
                    "finished_at": t + 3,
                    "updated_at": t + 3,
                    "destination": "main",
                }
                for i, t in enumerate(times)
            ],
        )
    hour = Window.ending_at(NOW, step=60, slots=60)
    week = Window.ending_at(NOW, step=3600, slots=168)
    with source.reader() as reader:
        per_minute = {s.slot: s.files for s in queries.arrivals(reader, hour)}
        per_hour = {s.slot: s.files for s in queries.arrivals(reader, week)}
    expected_minutes: dict[int, int] = {}
    for t in times:
        if t >= hour.start:
            slot = (int(t) - hour.start) // 60
            expected_minutes[slot] = expected_minutes.get(slot, 0) + 1
    assert per_minute == expected_minutes
    assert sum(per_hour.values()) == 3000 and len(per_hour) == 25  # 23.3 h from 12:00:17
    body = text_of(overview.render(source, {}))
    assert f"Arrived per minute, last hour: {sum(expected_minutes.values())} files" in body
    assert "Arrived per hour, last 7 days: 3,000 files" in body


# ---------------------------------------------------------------- query plans


def test_every_read_of_the_overview_is_an_index_range(source: PageSource) -> None:
    """What keeps the pages fast at 1,000,000 rows (bench/catalog_scale.py): SQLite's plan for
    each statement the overview runs on ``files`` searches an index, never scans the table or
    walks a whole index to group (the plans are the same on an empty catalog: no statistics
    are gathered on either)."""
    pages.demo(source.engine, now=NOW)
    seen: list[tuple[str, tuple[Any, ...]]] = []
    opened = source.reader

    def recording() -> Any:
        reader = opened()
        rows = reader.rows

        def record(sql: str, params: Any = ()) -> list[Any]:
            seen.append((sql, tuple(params)))
            return rows(sql, params)

        reader.rows = record  # type: ignore[method-assign]
        return reader

    object.__setattr__(source, "reader", recording)
    overview.render(source, {})
    object.__setattr__(source, "reader", opened)
    on_files = [(sql, p) for sql, p in seen if " FROM files" in sql]
    assert len(on_files) >= 10
    with source.reader() as reader:
        for sql, params in on_files:
            plan = " / ".join(r.detail for r in reader.rows("EXPLAIN QUERY PLAN " + sql, params))
            assert "SEARCH files USING" in plan, f"{sql}: {plan}"
            assert "SCAN files" not in plan, f"{sql}: {plan}"
