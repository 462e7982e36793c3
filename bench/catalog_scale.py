"""Catalog scale: CLI latency with 1,000,000 rows in ``files`` (10,000 with --quick).

The catalog is created by ``Catalog.open`` (so it has the real schema and migrations) and filled
with SQLAlchemy Core; it is kept in bench/out/data and rebuilt when the row count or the schema
revision changes. The rows look like a year of a busy scanner room: 95 % uploaded, the rest
duplicate, rejected, failed, cancelled or still queued, spread over 10 inboxes and 365 days,
in batches of 500.

The dashboard's pages (``ingestd.page``) are timed too, in this process: each page fetched
from the real HTTP server over the same catalog, and each of its reads on its own.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.ingestd_conf import Inbox, IngestdSetup, ingestd_env, write_config
from bench.measure import median, spread

_BATCH = 20_000
_BATCH_FILES = 500  # files per batch (``batches`` rows and ``files.batch_id``)
# Bumped when the rows change, so a catalog built from older rows is built again.
_DATASET = 2
_STATES = (
    ("uploaded", 0.95),
    ("duplicate", 0.02),
    ("rejected", 0.015),
    ("failed", 0.005),
    ("cancelled", 0.005),
    ("queued", 0.005),
)
_REASONS = {"rejected": ("truncated", "PDF without %%EOF"), "failed": ("attempts", "gave up")}


def _row(i: int, rng: random.Random, now: float) -> dict[str, Any]:
    state = rng.choices([s for s, _ in _STATES], [w for _, w in _STATES])[0]
    inbox = f"scan{i % 10}"
    relpath = f"{i // 1000:04d}/scan-{i:07d}.pdf"
    size = int(50_000 * 2 ** rng.uniform(0, 7))
    discovered = now - rng.uniform(0, 365 * 86400)
    done = state not in ("queued",)
    code, reason = _REASONS.get(state, (None, None))
    return {
        "inbox": inbox,
        "relpath": relpath,
        "source_path": f"/srv/drop/{inbox}/{relpath}",
        "source_key": None if done else f"{inbox}\0{relpath}",
        "size": size,
        "mtime_ns": int(discovered * 1e9),
        "sha256": hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
        "detected_type": "pdf",
        "content_type": "application/pdf",
        "dedup_scope": "*",
        "state": state,
        "reason_code": code,
        "reason": reason,
        "attempts": 8 if state == "failed" else (1 if state == "uploaded" else 0),
        "destination": "main",
        "key": f"{inbox}/{relpath}" if state == "uploaded" else None,
        "discovered_at": discovered,
        "queued_at": discovered + 5.5,
        "started_at": discovered + 6 if state == "uploaded" else None,
        "finished_at": discovered + 8 if done else None,
        "updated_at": discovered + 8,
        "post_done": done,
        "bytes_sent": size if state == "uploaded" else 0,
        "upload_seconds": 2.0 if state == "uploaded" else None,
        "batch_id": i // _BATCH_FILES + 1,
    }


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ingestd.catalog.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head() or ""
    # With the migrations' text: a renumbered or rebased chain under the same head id must
    # rebuild the cached catalog too (its columns differ).
    digest = hashlib.sha256()
    for path in sorted(Path(MIGRATIONS, "versions").glob("*.py")):
        digest.update(path.read_bytes())
    return f"{head}:{digest.hexdigest()[:16]}"


def _build(db_file: Path, rows: int) -> None:
    from ingestd.catalog.repo import Catalog
    from ingestd.catalog.schema import batches, files

    shutil.rmtree(db_file.parent, ignore_errors=True)
    db_file.parent.mkdir(parents=True)
    print(f"bench: building a catalog with {rows:,} rows in {db_file}", flush=True)
    catalog = Catalog.open(f"sqlite:///{db_file}")
    rng, now = random.Random(7), time.time()
    with catalog.engine.begin() as conn:
        for start in range(0, rows, _BATCH):
            batch = [_row(i, rng, now) for i in range(start, min(rows, start + _BATCH))]
            conn.execute(files.insert(), batch)
        count = (rows + _BATCH_FILES - 1) // _BATCH_FILES
        conn.execute(
            batches.insert(),
            [
                {
                    "id": b,
                    "inbox": f"scan{b % 10}",
                    "opened_at": now - (count - b + 1) * 3600.0,
                    "last_arrival_at": now - (count - b + 1) * 3600.0 + 600.0,
                    "closed_at": now - (count - b + 1) * 3600.0 + 720.0,
                }
                for b in range(1, count + 1)
            ],
        )
    catalog.close()


def ensure_catalog(ctx: Context, rows: int) -> Path:
    """The state dir of a catalog with ``rows`` files, built unless an intact one is there."""
    state_dir = ctx.data_root / f"catalog-{rows}"
    db_file = state_dir / "catalog.db"
    manifest = state_dir.with_name(state_dir.name + ".json")
    wanted = {"rows": rows, "revision": _head_revision(), "dataset": _DATASET}
    if not (db_file.exists() and manifest.exists() and json.loads(manifest.read_text()) == wanted):
        manifest.unlink(missing_ok=True)
        _build(db_file, rows)
        manifest.write_text(json.dumps(wanted))
    return state_dir


def _commands(ctx: Context) -> list[list[str]]:
    helptext = subprocess.run(
        [*ctx.tools.ingestd, "--help"], capture_output=True, text=True, env=ingestd_env()
    ).stdout
    commands = [["version"], ["status"], ["status", "--json"], ["files", "--limit", "10"]]
    if " report " in helptext:
        commands.append(["report"])
    return commands


def run_catalog(ctx: Context) -> dict[str, Any]:
    """Wall time of each read command (a fresh process each, as a user runs it)."""
    rows = 10_000 if ctx.quick else 1_000_000
    state_dir = ensure_catalog(ctx, rows)
    inboxes = tuple(Inbox(f"scan{i}", ctx.work / "catalog-inbox" / f"scan{i}") for i in range(10))
    for inbox in inboxes:
        inbox.path.mkdir(parents=True, exist_ok=True)
    setup = IngestdSetup(state_dir=state_dir, inboxes=inboxes, prefix="catalog", settle_seconds=5)
    config = write_config(setup, ctx.server, ctx.work / "catalog.toml")
    repeats = 1 if ctx.quick else 5
    results: dict[str, Any] = {"rows": rows, "commands": {}}
    for command in _commands(ctx):
        argv = [*ctx.tools.ingestd, *command]
        if command != ["version"]:  # the bare start-up cost, for comparison
            argv += ["--config", str(config)]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, env=ingestd_env(), timeout=600)
            times.append(time.perf_counter() - start)
            # status exits 3 when no daemon is alive (none runs on the bench's catalog)
            if done.returncode not in ((0, 3) if command[0] == "status" else (0,)):
                raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
        low, high = spread(times)
        name = "ingestd " + " ".join(command)
        results["commands"][name] = {"median": median(times), "min": low, "max": high}
        print(f"bench: {name} with {rows:,} rows: {median(times):.3f} s", flush=True)
    if "ingestd report" not in results["commands"]:
        results["note"] = "ingestd report does not exist in this version"
    results["dashboard"] = run_dashboard(
        state_dir, inboxes=[i.name for i in inboxes], repeats=repeats
    )
    return results


def _dashboard_settings(state_dir: Path, inboxes: list[str]) -> Any:
    from ingestd.config import Settings

    return Settings(
        state_dir=state_dir,
        destinations={"main": {"type": "directory", "path": str(state_dir / "unused-bucket")}},
        inboxes=[
            {"name": n, "path": str(state_dir / "unused-inbox" / n), "destination": "main"}
            for n in inboxes
        ],
    )


def run_dashboard(state_dir: Path, *, inboxes: list[str], repeats: int) -> dict[str, Any]:
    """Wall time of each dashboard page (a GET to the real HTTP server) and of each read behind
    the overview, on the bench's catalog. Pages that look for rare things are timed too: a
    name that matches one file (the name search scans newest first until it has its page)."""
    import urllib.request

    from ingestd.catalog.repo import Catalog
    from ingestd.http import start_http_server
    from ingestd.page import queries
    from ingestd.page.source import PageSource

    settings = _dashboard_settings(state_dir, inboxes)
    catalog = Catalog.open(settings.effective_catalog_url)
    source = PageSource(engine=catalog.engine, settings=settings)
    now = time.time()
    with source.reader() as reader:
        newest = reader.one("SELECT max(id) AS id FROM files").id
        batch = reader.one("SELECT max(id) AS id FROM batches").id
        sha = reader.one("SELECT sha256 FROM files WHERE id = ?", (newest // 2,)).sha256
    hour = queries.Window.ending_at(now, step=60, slots=60)
    week = queries.Window.ending_at(now, step=3600, slots=168)
    reads: dict[str, Any] = {
        "arrivals, last hour per minute": lambda r: queries.arrivals(r, hour),
        "uploads, last hour per minute": lambda r: queries.uploads(r, hour),
        "arrivals, 7 days per hour": lambda r: queries.arrivals(r, week),
        "uploads, 7 days per hour": lambda r: queries.uploads(r, week),
        "arrived today by state": lambda r: queries.arrived_since(r, now - 43_200),
        "next files due": lambda r: queries.next_due(
            r, "main", now=now, limit=10, aging_seconds=3600.0
        ),
        "problems by reason": queries.problem_groups,
        "newest batches": lambda r: queries.recent_batches(r, limit=8),
        "search: rare name": lambda r: queries.search(r, queries.Search(name="scan-0000017")),
        "search: SHA-256 prefix": lambda r: queries.search(r, queries.Search(sha256=sha[:8])),
    }
    results: dict[str, Any] = {"reads": {}, "pages": {}}
    with source.reader() as reader:
        for name, read in reads.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                read(reader)
                times.append(time.perf_counter() - start)
            results["reads"][name] = _summary(times)
            print(f"bench: dashboard read {name}: {median(times) * 1000:.1f} ms", flush=True)
    server = start_http_server("127.0.0.1:0", daemon=_Served(source))
    paths = [
        "/",
        "/problems",
        "/batches",
        f"/batches/{batch}",
        f"/files/{newest}",
        "/files?state=failed",
        "/files?name=scan-0000017",
        f"/files?sha256={sha[:8]}",
    ]
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path in paths:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                with urllib.request.urlopen(base + path, timeout=600) as answer:
                    answer.read()
                times.append(time.perf_counter() - start)
            results["pages"][f"GET {path}"] = _summary(times)
            print(f"bench: dashboard GET {path}: {median(times):.3f} s", flush=True)
    finally:
        server.close()
        catalog.close()
    return results


class _Served:
    """What the HTTP server reads, without a daemon: the pages' source (no /status or /metrics
    are timed here)."""

    def __init__(self, source: Any) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.page_source = source

    def healthy(self) -> bool:
        return True

    def readiness_problems(self) -> list[str]:
        return []

    def status_snapshot(self) -> dict[str, Any]:
        return {}


def _summary(times: list[float]) -> dict[str, float]:
    low, high = spread(times)
    return {"median": median(times), "min": low, "max": high}
