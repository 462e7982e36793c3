"""Tables. Times are UNIX epoch seconds (float): portable across SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

import ingestd.names as names


class NameText(TypeDecorator[str]):
    """TEXT holding a file name or path exactly, non-UTF-8 bytes included: the code sees the
    name as the filesystem gives it (surrogate escapes), the column ``names.to_catalog`` of it
    (docs/ARCHITECTURE.md, "File names"). The DDL is plain TEXT, so no migration changes it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else names.to_catalog(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else names.from_catalog(value)


# Integer primary keys autoincrement on both SQLite and PostgreSQL; BIGINT on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("inbox", String(64), nullable=False),
    Column("relpath", NameText, nullable=False),
    Column("source_path", NameText, nullable=False),
    # "<inbox>\0<relpath>" while this row owns the source path; NULL once the source is moved or
    # deleted, or a newer version took the path. Unique: two nodes cannot take in one file twice.
    Column("source_key", NameText, nullable=True, unique=True),
    Column("owner", String(128), nullable=False, server_default=""),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("sha256", String(64)),
    Column("detected_type", String(16)),
    Column("content_type", String(128)),
    Column("dedup_scope", String(80)),
    Column("state", String(16), nullable=False),
    Column("reason_code", Text),  # may hold several codes: "corrupt,extension_mismatch"
    Column("reason", NameText),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float),
    Column("destination", String(64)),
    Column("key", Text),
    Column("original_id", Id),
    Column("batch_id", Id),
    Column("discovered_at", Float, nullable=False),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires", Float),
    Column("cancel_requested", Boolean, nullable=False, server_default="0"),
    # The post-action (archive/delete/quarantine) is done: nothing is left to do for the row.
    # ("finished", as in finished_at, means only: in a terminal state.)
    Column("post_done", Boolean, nullable=False, server_default="0"),
    Column("post_path", NameText),
    Column("upload_id", Text),
    Column("part_size", BigInteger),
    Column("bytes_sent", BigInteger, nullable=False, server_default="0"),
    Column("upload_seconds", Float),
    # MD5 from the fingerprint's read, for a file below its destination's multipart threshold:
    # sent as Content-MD5, it ties the object's bytes to the SHA-256 (see hashing.fingerprint).
    Column("md5", String(32)),
    # The source's ctime when it was hashed: the upload refuses a source whose ctime moved since.
    Column("ctime_ns", BigInteger),
    # Higher first within a destination's queue: the inbox's priority, raised by prioritize.
    Column("priority", Integer, nullable=False, server_default="0"),
)
Index("ix_files_lane", files.c.destination, files.c.state, files.c.id)
# The claim's order: priority (highest first), then first come.
Index(
    "ix_files_lane_priority",
    files.c.destination,
    files.c.state,
    files.c.priority.desc(),
    files.c.id,
)
Index("ix_files_state", files.c.state, files.c.inbox)
Index("ix_files_batch", files.c.batch_id)
Index("ix_files_sha256", files.c.sha256)
Index("ix_files_updated", files.c.updated_at)
# Status and report on large catalogs: recent throughput, bytes per state, arrival span.
Index("ix_files_state_finished", files.c.state, files.c.finished_at)
Index("ix_files_state_size", files.c.state, files.c.size)
Index("ix_files_discovered", files.c.discovered_at)
Index("ix_files_finished", files.c.finished_at)
Index("ix_files_state_updated", files.c.state, files.c.updated_at)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("file_id", Id, nullable=False),
    Column("at", Float, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16)),
    Column("code", Text),
    Column("detail", NameText),
)
Index("ix_events_file", events.c.file_id, events.c.id)

parts = Table(
    "parts",
    metadata,
    Column("file_id", Id, primary_key=True),
    Column("part_number", Integer, primary_key=True),
    Column("upload_id", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", Text, nullable=False),
    Column("md5", String(32), nullable=False),
)

# Content hashes that currently block a copy from being uploaded again. Kept after retention
# prunes the file rows, so dedup outlives the timeline.
fingerprints = Table(
    "fingerprints",
    metadata,
    Column("scope", String(80), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("file_id", Id, nullable=False),
    Column("key", Text),
    Column("created_at", Float, nullable=False),
)
# Every upload records its key on its fingerprint, and a failed or cancelled file releases
# its own: by file id. The table keeps every content hash ever uploaded, so without this
# index each of those statements scans the catalog's whole history (90 ms at 1,000,000).
Index("ix_fingerprints_file", fingerprints.c.file_id)

lanes = Table(
    "lanes",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("paused", Boolean, nullable=False, server_default="0"),
    Column("up", Boolean, nullable=False, server_default="1"),
    Column("down_since", Float),
    Column("last_error", Text),
    Column("hold_reason", Text),
    Column("owner", String(128)),
    Column("lease_expires", Float),
    Column("current_file_id", Id),
    Column("cooldown_until", Float),
    Column("updated_at", Float, nullable=False),
    # The key check the daemon chose at start (migration 0013): conditional PUTs or a HEAD.
    Column("conditional_writes", Boolean),
    Column("key_check", Text),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node", String(128), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("detail", Text),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("inbox", String(64), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("last_arrival_at", Float, nullable=False),
    Column("closed_at", Float),
)
Index("ix_batches_inbox", batches.c.inbox, batches.c.closed_at)

# Notifications waiting for delivery (webhooks). ``uid`` is the payload's stable id: several
# nodes reporting the same batch enqueue it once.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("uid", String(128), nullable=False, unique=True),
    Column("event", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("delivered_at", Float),
    Column("dead_at", Float),
    Column("last_error", Text),
)
Index("ix_outbox_due", outbox.c.delivered_at, outbox.c.dead_at, outbox.c.next_attempt_at)

# Health of inboxes that can be "down" (remote SFTP servers), written by the daemon's heartbeat.
inbox_health = Table(
    "inbox_health",
    metadata,
    Column("inbox", String(64), primary_key=True),
    Column("up", Boolean, nullable=False, server_default="1"),
    Column("down_since", Float),
    Column("last_error", Text),
    Column("updated_at", Float, nullable=False),
)

# Files and bytes per (inbox, state), kept exact by triggers on ``files`` (migration 0006), so
# status, report and /metrics read a few rows instead of grouping the whole catalog. A migration
# that rebuilds ``files`` (SQLite batch mode) drops those triggers: it must create them again
# (test_catalog.py::test_file_totals_follow_every_change runs at the head revision).
file_totals = Table(
    "file_totals",
    metadata,
    Column("inbox", String(64), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("files", BigInteger, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
)
