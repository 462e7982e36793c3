"""``ingestd migrate``: what a schema migration would do, the decision whether to run it, and
the report. ``decide`` and ``report_lines``/``report_json`` are pure; ``inspect`` and
``execute`` do the catalog I/O (``catalog.plan``, ``catalog.db.migrate``, which backs an SQLite
catalog up first). See docs/ARCHITECTURE.md and the README's "Upgrade, backup and restore".

PostgreSQL needs ``--yes``: ingestd cannot copy that catalog itself (pg_dump needs the server's
tools and may take long on a big catalog), so the operator confirms having dumped it. The
daemon's own start still migrates PostgreSQL without asking (with a warning), as several nodes
must be able to start after an upgrade without a person at each.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ingestd import exitcodes as codes
from ingestd.catalog.plan import MigrationPlan, pending_steps, plan_for
from ingestd.catalog.revision import HEAD_REVISION
from ingestd.redact import mask_url
from ingestd.untrusted import shown


class Action(StrEnum):
    NOTHING = "nothing"  # already at the target revision
    DRY_RUN = "dry_run"  # shown, nothing changed
    NEEDS_YES = "needs_yes"  # PostgreSQL without --yes: refused
    NEWER = "newer"  # the catalog is ahead of this ingestd: refused
    RUN = "run"


EXIT_CODES = {
    Action.NOTHING: codes.OK,
    Action.DRY_RUN: codes.OK,
    Action.RUN: codes.OK,
    Action.NEEDS_YES: codes.USAGE,  # the command line lacks the confirmation
    Action.NEWER: codes.CATALOG_UNAVAILABLE,  # "its schema is another ingestd's"
}


def decide(plan: MigrationPlan, *, dry_run: bool, yes: bool) -> Action:
    """What ``migrate`` does with ``plan`` (pure)."""
    if plan.newer:
        return Action.NEWER
    if not plan.steps:
        return Action.NOTHING
    if dry_run:
        return Action.DRY_RUN
    if plan.backend != "sqlite" and not yes:
        return Action.NEEDS_YES
    return Action.RUN


@dataclass(frozen=True)
class Outcome:
    """What ``migrate`` found and did."""

    url: str
    plan: MigrationPlan
    action: Action
    backups: Path | None  # where an SQLite catalog is backed up (None on PostgreSQL)
    exists: bool = True  # False: an SQLite catalog that has no file yet
    backup: Path | None = None  # the copy made before migrating
    migrated: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.action]


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite catalog URL (None for PostgreSQL or an in-memory catalog)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def inspect(url: str, *, backups: Path, dry_run: bool, yes: bool) -> tuple[Outcome, Any]:
    """The plan and decision for the catalog at ``url``, and the engine to run it with (None
    when there is no SQLite file yet: looking must not create one). Raises SQLAlchemy's
    DBAPIError when the catalog cannot be reached."""
    from ingestd.catalog import db

    db_file = sqlite_file(url)
    if db_file is not None and not db_file.exists():
        plan = MigrationPlan(
            backend="sqlite", current=None, head=HEAD_REVISION, steps=pending_steps(None)
        )
        engine = None
    else:
        engine = db.make_engine(url)
        plan = plan_for(engine)
    outcome = Outcome(
        url=url,
        plan=plan,
        action=decide(plan, dry_run=dry_run, yes=yes),
        backups=backups if plan.backend == "sqlite" else None,
        exists=engine is not None,
    )
    return outcome, engine


def execute(outcome: Outcome, engine: Any) -> Outcome:
    """Run the migrations of an ``Action.RUN`` outcome (backing an SQLite catalog up first);
    the outcome with what was done. Raises CatalogBackupFailed when the copy failed."""
    from dataclasses import replace

    from ingestd.catalog import db

    if outcome.action is not Action.RUN:
        return outcome
    own = engine is None
    engine = engine if engine is not None else db.make_engine(outcome.url)
    try:
        # RUN on PostgreSQL means --yes: the operator has dumped it, no warning to repeat.
        copy = db.migrate(
            engine, backups=outcome.backups, pg_dumped=outcome.plan.backend != "sqlite"
        )
    finally:
        if own:
            engine.dispose()
    return replace(outcome, backup=copy, migrated=True)


def pg_dump_advice(plan: MigrationPlan) -> str:
    return (
        "ingestd cannot back up a PostgreSQL catalog itself: dump it first, e.g. "
        f"pg_dump --format=custom --file=ingestd-{plan.current or 'none'}.dump <database> "
        "(restore with pg_restore --clean --dbname=<database>)"
    )


def report_lines(outcome: Outcome) -> list[str]:
    """The text report (pure); URLs masked, paths shown through ``untrusted.shown``."""
    plan = outcome.plan
    lines = [
        f"catalog: {shown(mask_url(outcome.url))}",
        f"current revision: {plan.current or 'none'}"
        + ("" if outcome.exists else " (no catalog yet)"),
        f"target revision: {plan.head}",
    ]
    if plan.steps and outcome.action is not Action.NEWER:
        lines.append(f"migrations to run ({len(plan.steps)}):")
        lines += [f"  {s.revision}  {shown(s.description)}" for s in plan.steps]
    action = outcome.action
    if action is Action.NEWER:
        lines.append(
            f"the catalog is newer than this ingestd ({plan.current} > {plan.head}): another "
            "node runs a newer ingestd; upgrade this one"
        )
    elif action is Action.NOTHING:
        lines.append("nothing to do: the catalog is at the target revision")
    elif plan.backend != "sqlite" and not outcome.migrated:
        lines.append(pg_dump_advice(plan))
        if action is Action.NEEDS_YES:
            lines.append("then run: ingestd migrate --yes")
    if action is Action.DRY_RUN:
        where = (
            f" after backing the catalog up into {shown(outcome.backups)}"
            if outcome.backups is not None and plan.current is not None
            else ""
        )
        lines.append(f"dry run: nothing changed ('ingestd migrate' runs them{where})")
    if outcome.backup is not None:
        lines.append(f"backed up revision {plan.current} to {shown(outcome.backup)}")
    if outcome.migrated:
        lines.append(
            f"migrated from revision {plan.current or 'none'} to {plan.head} "
            f"({len(plan.steps)} migration(s))"
        )
    return lines


def report_json(outcome: Outcome) -> dict[str, Any]:
    """The ``--json`` document (pure): exact values, the URL's credentials masked."""
    plan = outcome.plan
    pg = plan.backend != "sqlite"
    return {
        "catalog": mask_url(outcome.url),
        "backend": plan.backend,
        "exists": outcome.exists,
        "current": plan.current,
        "target": plan.head,
        "migrations": [
            {"revision": s.revision, "description": s.description}
            for s in (plan.steps if outcome.action is not Action.NEWER else ())
        ],
        "action": outcome.action.value,
        "dry_run": outcome.action is Action.DRY_RUN,
        "migrated": outcome.migrated,
        "backups_dir": str(outcome.backups) if outcome.backups is not None else None,
        "backup": str(outcome.backup) if outcome.backup is not None else None,
        "notice": pg_dump_advice(plan) if pg and plan.steps else None,
    }
