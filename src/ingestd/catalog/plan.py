"""What a schema migration would do: the catalog's revision, this ingestd's, and the
migrations between them, oldest first (``ingestd migrate --dry-run`` shows it; the daemon's
start and ``migrate`` decide from it whether to back up). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from ingestd.catalog import db, revision


@dataclass(frozen=True)
class Step:
    """One migration: its revision and the first line of its description."""

    revision: str
    description: str


@dataclass(frozen=True)
class MigrationPlan:
    """Where the catalog is, where this ingestd wants it, and the way there."""

    backend: str  # "sqlite" or "postgresql"
    current: str | None  # None: no schema yet (a new catalog)
    head: str
    steps: tuple[Step, ...]

    @property
    def newer(self) -> bool:
        """The catalog is ahead of this ingestd: another node runs a newer version."""
        return self.current is not None and self.current > self.head

    @property
    def needs_backup(self) -> bool:
        """An existing schema is about to change (a new catalog has nothing to lose)."""
        return self.current is not None and bool(self.steps)


def plan_for(engine: Engine) -> MigrationPlan:
    """The plan for the catalog behind ``engine`` (reads its alembic_version; imports Alembic
    only when the catalog is not at the head revision)."""
    current = db.current_revision(engine)
    head = revision.HEAD_REVISION
    steps: tuple[Step, ...] = ()
    if current != head and (current is None or current < head):
        steps = pending_steps(current)
    return MigrationPlan(backend=engine.dialect.name, current=current, head=head, steps=steps)


def pending_steps(current: str | None) -> tuple[Step, ...]:
    """The migrations after ``current`` up to the head, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._alembic_config_for_script())
    found = script.iterate_revisions("heads", current or "base")
    steps = [
        Step(revision=str(s.revision), description=" ".join((s.doc or "").split()))
        for s in found
        if s.revision != current
    ]
    return tuple(reversed(steps))
