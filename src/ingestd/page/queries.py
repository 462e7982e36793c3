"""The dashboard's reads, in plain SQL through ``catalog.reader`` (SQLite and PostgreSQL).

Each query is an index range whose cost follows the rows in its window, not the catalog's size
(bench/catalog_scale.py measures them at 1,000,000 rows; docs/ARCHITECTURE.md, "The
dashboard"):

* arrivals per slot, and today's arrivals by state: ``ix_files_discovered`` (discovered_at);
* uploads per slot: ``ix_files_state_finished`` (state, finished_at);
* the next queued files: ``ix_files_lane_priority`` and ``ix_files_lane``, as the lane claims
  them (priority first, the oldest once it has waited ``aging_minutes``);
* problems by reason: ``ix_files_state`` (state, inbox) over failed and rejected rows;
* batches: the newest batch rows, then ``ix_files_batch`` for their files;
* search by SHA-256 prefix: ``ix_files_sha256``; by name: newest first, stopping at the limit.

Times are bucketed as whole seconds, then divided as integers (floor division for the
non-negative values a window gives, on both databases). The whole second is ``CAST(t AS
INTEGER)`` on SQLite (it truncates) and ``floor(t)`` on PostgreSQL (whose CAST rounds): a file
lands in the same slot on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestd.catalog.reader import Reader
from ingestd.states import FileState

SEARCH_LIMIT_MAX = 1000
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Slot:
    """Files and bytes of one inbox in one time slot."""

    inbox: str
    slot: int
    files: int
    bytes: int


@dataclass(frozen=True)
class Window:
    """A chart's time axis: ``slots`` slots of ``step`` seconds, the last one holding now."""

    start: int
    step: int
    slots: int

    @classmethod
    def ending_at(cls, now: float, *, step: int, slots: int) -> Window:
        current = int(now) // step * step
        return cls(start=current - (slots - 1) * step, step=step, slots=slots)


def _seconds(reader: Reader, column: str) -> str:
    """A time column as whole seconds, rounded down, in the catalog's SQL."""
    return f"CAST(floor({column}) AS BIGINT)" if reader.postgres else f"CAST({column} AS INTEGER)"


def arrivals(reader: Reader, window: Window) -> list[Slot]:
    """Files taken in (any outcome) per inbox and slot."""
    rows = reader.rows(
        f"SELECT inbox, ({_seconds(reader, 'discovered_at')} - ?) / ? AS slot,"  # noqa: S608 (constant)
        " count(*) AS files, coalesce(sum(size), 0) AS bytes"
        " FROM files WHERE discovered_at >= ? GROUP BY inbox, slot",
        (window.start, window.step, window.start),
    )
    return _slots(rows, window)


def uploads(reader: Reader, window: Window) -> list[Slot]:
    """Files uploaded (stored and verified) per inbox and slot."""
    rows = reader.rows(
        f"SELECT inbox, ({_seconds(reader, 'finished_at')} - ?) / ? AS slot,"  # noqa: S608 (constant)
        " count(*) AS files, coalesce(sum(size), 0) AS bytes"
        " FROM files WHERE state = ? AND finished_at >= ? GROUP BY inbox, slot",
        (window.start, window.step, FileState.UPLOADED.value, window.start),
    )
    return _slots(rows, window)


def _slots(rows: Sequence[Any], window: Window) -> list[Slot]:
    return [
        Slot(r.inbox, int(r.slot), int(r.files), int(r.bytes))
        for r in rows
        if 0 <= int(r.slot) < window.slots
    ]


def arrived_since(reader: Reader, since: float) -> dict[str, tuple[int, int]]:
    """(files, bytes) per state of the files that arrived at or after ``since``."""
    # Grouped by an expression, not the column: SQLite would otherwise walk an index on state
    # to group without sorting, reading the whole catalog (2.8 s at 1,000,000 rows) instead of
    # the day's range of ix_files_discovered (10 ms).
    rows = reader.rows(
        "SELECT state || '' AS state, count(*) AS files, coalesce(sum(size), 0) AS bytes"
        " FROM files WHERE discovered_at >= ? GROUP BY 1",
        (since,),
    )
    return {r.state: (int(r.files), int(r.bytes)) for r in rows}


def uploaded_since(reader: Reader, since: float) -> tuple[int, int]:
    """(files, bytes) uploaded at or after ``since``, whenever they arrived."""
    row = reader.one(
        "SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes"
        " FROM files WHERE state = ? AND finished_at >= ?",
        (FileState.UPLOADED.value, since),
    )
    return int(row.files), int(row.bytes)


def waiting(reader: Reader) -> dict[str, tuple[int, int]]:
    """(files, bytes left) in the upload queue (queued and uploading) per destination."""
    rows = reader.rows(
        "SELECT destination, count(*) AS files, coalesce(sum(size - bytes_sent), 0) AS bytes"
        " FROM files WHERE state IN (?, ?) GROUP BY destination",
        (FileState.QUEUED.value, FileState.UPLOADING.value),
    )
    return {r.destination: (int(r.files), int(r.bytes)) for r in rows}


def lanes_updated(reader: Reader) -> dict[str, float]:
    """When each lane row was last written: a lane held by a busy gate writes it at each look."""
    return {
        r.destination: float(r.updated_at)
        for r in reader.rows("SELECT destination, updated_at FROM lanes")
    }


_NEXT_COLUMNS = "id, inbox, relpath, size, attempts, next_attempt_at, queued_at, priority"
_DUE = (
    " FROM files WHERE destination = ? AND state = ?"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
)


def next_due(
    reader: Reader, destination: str, *, now: float, limit: int, aging_seconds: float
) -> list[Any]:
    """The queued files the lane takes next, in the order it takes them: the claim's two index
    seeks (``ix_files_lane_priority``, ``ix_files_lane``), ``limit`` rows each, merged by
    ``claim_order``."""
    params = (destination, FileState.QUEUED.value, now, limit)
    by_priority = reader.rows(
        f"SELECT {_NEXT_COLUMNS}{_DUE} ORDER BY priority DESC, id LIMIT ?",
        params,
    )
    if aging_seconds <= 0:
        return by_priority
    by_age = reader.rows(f"SELECT {_NEXT_COLUMNS}{_DUE} ORDER BY id LIMIT ?", params)
    return claim_order(by_priority, by_age, now=now, aging_seconds=aging_seconds, limit=limit)


def claim_order(
    by_priority: Sequence[Any],
    by_age: Sequence[Any],
    *,
    now: float,
    aging_seconds: float,
    limit: int,
) -> list[Any]:
    """The lane's claims one after another, as ``LaneOps._next_in_order`` makes each: the
    highest priority (first come within it), but the oldest due file once it has waited
    ``aging_seconds``. Pure; the first ``limit`` of each order are enough for ``limit``
    claims."""
    taken: set[int] = set()
    out: list[Any] = []
    while len(out) < limit:
        best = next((r for r in by_priority if r.id not in taken), None)
        if best is None:
            break
        oldest = next((r for r in by_age if r.id not in taken), None)
        pick = best
        if oldest is not None and oldest.id != best.id:
            waited_since = oldest.queued_at if oldest.queued_at is not None else now
            if waited_since <= now - aging_seconds:
                pick = oldest
        out.append(pick)
        taken.add(pick.id)
    return out


def retry_waiting(reader: Reader, destination: str, *, now: float, limit: int) -> list[Any]:
    """Queued files waiting for their next attempt, soonest first."""
    return reader.rows(
        f"SELECT {_NEXT_COLUMNS} FROM files WHERE destination = ? AND state = ?"  # noqa: S608 (constant columns)
        " AND next_attempt_at > ? ORDER BY next_attempt_at LIMIT ?",
        (destination, FileState.QUEUED.value, now, limit),
    )


@dataclass(frozen=True)
class BatchCounts:
    """One batch row with its files counted per state."""

    id: int
    inbox: str
    opened_at: float
    last_arrival_at: float
    closed_at: float | None
    counts: dict[str, int]
    bytes: int
    last_finished_at: float | None

    @property
    def received(self) -> int:
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        return sum(
            self.counts.get(s.value, 0)
            for s in (FileState.DISCOVERED, FileState.QUEUED, FileState.UPLOADING)
        )


def recent_batches(reader: Reader, *, limit: int) -> list[BatchCounts]:
    """The newest ``limit`` batches, newest first, with their counts per state."""
    heads = reader.rows("SELECT * FROM batches ORDER BY id DESC LIMIT ?", (limit,))
    if not heads:
        return []
    marks = ", ".join("?" for _ in heads)
    per_state = reader.rows(
        "SELECT batch_id, state, count(*) AS files, coalesce(sum(size), 0) AS bytes,"  # noqa: S608 (placeholders only)
        f" max(finished_at) AS last_finished FROM files WHERE batch_id IN ({marks})"
        " GROUP BY batch_id, state",
        tuple(h.id for h in heads),
    )
    counts: dict[int, dict[str, int]] = {h.id: {} for h in heads}
    sizes: dict[int, int] = dict.fromkeys(counts, 0)
    finished: dict[int, float | None] = dict.fromkeys(counts)
    for r in per_state:
        counts[r.batch_id][r.state] = int(r.files)
        sizes[r.batch_id] += int(r.bytes)
        if r.last_finished is not None:
            before = finished[r.batch_id]
            finished[r.batch_id] = max(before or 0.0, float(r.last_finished))
    return [
        BatchCounts(
            id=int(h.id),
            inbox=h.inbox,
            opened_at=float(h.opened_at),
            last_arrival_at=float(h.last_arrival_at),
            closed_at=h.closed_at,
            counts=counts[h.id],
            bytes=sizes[h.id],
            last_finished_at=finished[h.id],
        )
        for h in heads
    ]


@dataclass(frozen=True)
class ProblemGroup:
    """Failed or rejected files of one inbox with one reason code."""

    state: str
    inbox: str
    reason_code: str | None
    files: int
    newest_id: int


def problem_groups(reader: Reader) -> list[ProblemGroup]:
    """Failed and rejected files grouped by (state, inbox, reason code), largest first."""
    rows = reader.rows(
        "SELECT state, inbox, reason_code, count(*) AS files, max(id) AS newest"
        " FROM files WHERE state IN (?, ?) GROUP BY state, inbox, reason_code",
        (FileState.FAILED.value, FileState.REJECTED.value),
    )
    groups = [
        ProblemGroup(r.state, r.inbox, r.reason_code, int(r.files), int(r.newest)) for r in rows
    ]
    return sorted(groups, key=lambda g: (g.state != FileState.FAILED.value, -g.files, g.inbox))


@dataclass(frozen=True)
class Search:
    """What the file search asks for; every field optional (all given: all must match)."""

    name: str = ""
    sha256: str = ""
    state: str = ""
    inbox: str = ""
    reason: str = ""
    limit: int = 100

    def problems(self) -> list[str]:
        """Why the search cannot run as given (shown to the person who typed it)."""
        out = []
        if self.sha256 and not set(self.sha256) <= _HEX:
            out.append("a SHA-256 prefix is hexadecimal digits (0-9, a-f)")
        if self.state and self.state not in {s.value for s in FileState}:
            out.append("no such state")
        return out

    @property
    def empty(self) -> bool:
        return not (self.name or self.sha256 or self.state or self.inbox or self.reason)


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(reader: Reader, query: Search) -> list[Any]:
    """Files matching ``query``, newest first, at most ``query.limit`` (up to 1,000)."""
    where: list[str] = []
    params: list[Any] = []
    if query.sha256:
        # A prefix is a range of ix_files_sha256: ["ab", "ab" + the highest digit ...].
        prefix = query.sha256.lower()
        where.append("sha256 >= ? AND sha256 <= ?")
        params += [prefix, prefix + "f" * (64 - len(prefix))]
    if query.state:
        where.append("state = ?")
        params.append(query.state)
    if query.inbox:
        where.append("inbox = ?")
        params.append(query.inbox)
    if query.reason:
        where.append("reason_code = ?")
        params.append(query.reason)
    if query.name:
        where.append("lower(relpath) LIKE ? ESCAPE '\\'")
        params.append(_like(query.name))
    sql = "SELECT * FROM files"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(max(1, min(query.limit, SEARCH_LIMIT_MAX)))
    return reader.rows(sql, params)
