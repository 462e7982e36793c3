"""Catalog scale: CLI latency with 1,000,000 rows in ``files`` (10,000 with --quick).

The catalog is created by ``Catalog.open`` (so it has the real schema and migrations) and filled
with SQLAlchemy Core; it is kept in bench/out/data and rebuilt when the row count or the schema
revision changes. The rows look like a year of a busy scanner room: 95 % uploaded, the rest
duplicate, rejected, failed, cancelled or still queued, spread over 10 inboxes and 365 days.
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
    from ingestd.catalog.schema import files

    shutil.rmtree(db_file.parent, ignore_errors=True)
    db_file.parent.mkdir(parents=True)
    print(f"bench: building a catalog with {rows:,} rows in {db_file}", flush=True)
    catalog = Catalog.open(f"sqlite:///{db_file}")
    rng, now = random.Random(7), time.time()
    with catalog.engine.begin() as conn:
        for start in range(0, rows, _BATCH):
            batch = [_row(i, rng, now) for i in range(start, min(rows, start + _BATCH))]
            conn.execute(files.insert(), batch)
    catalog.close()


def ensure_catalog(ctx: Context, rows: int) -> Path:
    """The state dir of a catalog with ``rows`` files, built unless an intact one is there."""
    state_dir = ctx.data_root / f"catalog-{rows}"
    db_file = state_dir / "catalog.db"
    manifest = state_dir.with_name(state_dir.name + ".json")
    wanted = {"rows": rows, "revision": _head_revision()}
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
    return results
