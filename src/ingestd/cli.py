"""The ``ingestd`` command line.

Whatever it prints of untrusted text (names, paths, server errors) goes through
``untrusted.shown``; JSON keeps exact values with nothing a terminal interprets left raw
(``untrusted.json_safe``); configuration and URLs are masked (``redact``).

Over 400 lines: one typer app is one command table, and each command is a thin wrapper (parse
options, open the catalog read-only, call status/report/control/doctor, print, exit with an
``exitcodes`` value); splitting the table would scatter what ``ingestd --help`` lists together.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ingestd import __version__, names
from ingestd import exitcodes as codes
from ingestd.config import Settings, load_settings, resolve_config_path
from ingestd.errors import (
    CatalogBackupFailed,
    CatalogMissing,
    CatalogOutdated,
    CatalogUnreachable,
    ConfigError,
)
from ingestd.redact import mask_settings, mask_url, redact_text
from ingestd.states import FileState
from ingestd.untrusted import json_safe, shown

app = typer.Typer(
    name="ingestd",
    help="Watch drop folders; validate, de-duplicate and upload every file exactly once.",
    epilog="Exit codes: "
    + ", ".join(f"{code} {name}" for code, name, _ in codes.TABLE)
    + " (see EXIT STATUS in ingestd(1)).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ingestd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Watch drop folders; validate, de-duplicate and upload every file exactly once."""


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file (default: $INGESTD_CONFIG, then /etc/ingestd/ingestd.toml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (exact values) instead of text.")
]


class LogFormat(StrEnum):
    """``log_format``'s values (``Settings.log_format``)."""

    AUTO = "auto"
    HUMAN = "human"
    JSON = "json"
    JOURNAL = "journal"


class LogLevel(StrEnum):
    """``log_level``'s values (``Settings.log_level``)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LogFormatOpt = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        help="Log line format, overriding log_format: auto (human; under journald with "
        "<N> priorities and no timestamp), human, json (one object per line), or journal "
        "(structured fields on journald's socket; auto where there is none).",
        show_default=False,
        case_sensitive=False,
    ),
]
LogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        help="Lowest level logged, overriding log_level.",
        show_default=False,
        case_sensitive=False,
    ),
]
InboxOpt = Annotated[
    str | None, typer.Option("--inbox", help="Only this inbox (its name).", show_default=False)
]
BatchIdOpt = Annotated[
    int | None,
    typer.Option("--batch", help="Only the files of this batch id.", show_default=False),
]


def _iso_time(value: str | None) -> str | None:
    """Refuse (exit 2, as any bad option value) what is not an ISO date or time."""
    if value is not None:
        from datetime import datetime

        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(
                f"{shown(value)!r} is not an ISO date or time like 2026-11-22 or 2026-11-22T08:00"
            ) from None
    return value


SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only files seen since this ISO date or time (local time unless a zone is given).",
        show_default=False,
        callback=_iso_time,
    ),
]
DestinationOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--destination",
        "-d",
        help="A destination's name; repeatable (default: every destination).",
        show_default=False,
    ),
]


def fail(message: str, code: int = codes.FAILED) -> NoReturn:
    typer.echo(f"ingestd: {shown(redact_text(message))}", err=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> tuple[Settings, Path]:
    """Load the configuration, or print every problem and exit ``exitcodes.CONFIG``."""
    path = resolve_config_path(config)
    try:
        return load_settings(path), path
    except ConfigError as exc:
        typer.echo(f"ingestd: invalid configuration ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            typer.echo(f"  {shown(redact_text(problem))}", err=True)
        raise typer.Exit(codes.CONFIG) from None


def open_catalog_ro(settings: Settings) -> Any:
    from ingestd.catalog.repo import Catalog

    try:
        return Catalog.open(settings.effective_catalog_url, migrate=False)
    except (CatalogMissing, CatalogOutdated, CatalogUnreachable) as exc:
        fail(str(exc), codes.CATALOG_UNAVAILABLE)


def emit_json(data: Any) -> None:
    # Names that are not UTF-8: shown form plus "<field>_b64" (names.json_exact; README).
    doc = names.json_exact(data)
    typer.echo(json_safe(json.dumps(doc, indent=2, default=str, ensure_ascii=False)))


@app.command()
def run(
    config: ConfigOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM (SIGHUP reloads the config)."""
    _serve(config, once=False, log_format=log_format, log_level=log_level)


@app.command()
def scan(
    config: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Process what is there now, then exit.")
    ] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Take everything now in the inboxes through the pipeline, then exit.

    Exit code 0 when every file ended uploaded, duplicate or rejected; 1 when any failed;
    78 on a configuration error, 69 when the catalog cannot be reached.
    """
    if not once:
        fail("scan needs --once (use 'ingestd run' for the continuous daemon)", codes.USAGE)
    _serve(config, once=True, log_format=log_format, log_level=log_level)


def _serve(
    config: Path | None, *, once: bool, log_format: LogFormat | None, log_level: LogLevel | None
) -> None:
    from ingestd import logs, memory
    from ingestd.daemon import Daemon

    memory.limit_malloc_arenas()  # before any thread starts
    settings, path = settings_or_exit(config)
    logs.setup(
        fmt=log_format.value if log_format else settings.log_format,
        level=log_level.value if log_level else settings.log_level,
    )
    try:
        code = Daemon(settings=settings, config_path=path, once=once).run()
    except CatalogUnreachable as exc:
        fail(str(exc), codes.CATALOG_UNAVAILABLE)
    except CatalogBackupFailed as exc:
        fail(str(exc), codes.FAILED)
    raise typer.Exit(code)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
) -> None:
    """What ingestd is doing: daemon, destinations, counts per state, current upload, queue.

    Exit code 0 when a daemon is alive, 3 when none is (as systemctl status), 69 when the
    catalog cannot be reached.
    """
    from ingestd import status as status_mod
    from ingestd.catalog.reader import open_reader

    settings, _ = settings_or_exit(config)
    try:
        reader = open_reader(settings.effective_catalog_url)
    except CatalogMissing as exc:
        fail(str(exc), codes.NOT_RUNNING)  # no daemon has ever run with this configuration
    except (CatalogOutdated, CatalogUnreachable) as exc:
        fail(str(exc), codes.CATALOG_UNAVAILABLE)
    except ValueError as exc:
        fail(str(exc), codes.CONFIG)
    with reader:  # also before --watch: a missing catalog is said plainly, not in a redraw
        data = status_mod.collect(reader, settings)
    if watch:
        status_mod.watch(settings)
        return
    if as_json:
        emit_json(data)
    else:
        status_mod.render(data)
    if not data["daemon"]["running"]:
        raise typer.Exit(codes.NOT_RUNNING)


@app.command()
def files(
    config: ConfigOpt = None,
    state: Annotated[
        list[FileState] | None,
        typer.Option(
            "--state",
            help="Only files in this state; repeatable (default: every state).",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    inbox: InboxOpt = None,
    batch: BatchIdOpt = None,
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many files.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List files with their state, reason and object key, newest first."""
    from ingestd import status as status_mod
    from ingestd.catalog import queries

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    rows = queries.list_files(
        catalog.engine,
        states=[s.value for s in state] if state else None,
        inbox=inbox,
        batch=batch,
        since=status_mod.parse_since(since),
        limit=limit,
    )
    if as_json:
        emit_json(rows)
    else:
        status_mod.render_files(rows)


@app.command()
def batches(
    config: ConfigOpt = None,
    inbox: InboxOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many batches.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List batches (files of one inbox arriving without a gap of batch_idle_seconds)."""
    from ingestd import report as report_mod

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    rows = report_mod.list_batches(
        catalog.engine, inbox=inbox, limit=limit, idle_seconds=settings.batch_idle_seconds
    )
    if as_json:
        emit_json(rows)
    else:
        report_mod.render_batches(rows)


@app.command()
def report(
    config: ConfigOpt = None,
    batch: Annotated[
        str | None,
        typer.Option("--batch", help="Only this batch: its id or 'latest'.", show_default=False),
    ] = None,
    since: SinceOpt = None,
    inbox: InboxOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How many files were received, uploaded, duplicate, rejected (by reason), failed, pending;
    then every failed and rejected file with its reason and what to do."""
    from ingestd import report as report_mod
    from ingestd import status as status_mod

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    batch_id: int | None = None
    if batch == "latest":
        batch_id = report_mod.latest_batch(catalog.engine, inbox)
        if batch_id is None:
            fail("there are no batches yet")
    elif batch is not None:
        if not batch.isdigit():
            fail(f"--batch takes a batch id or 'latest', not {shown(batch)!r}", codes.USAGE)
        batch_id = int(batch)
    selection = report_mod.Selection(
        batch=batch_id, since=status_mod.parse_since(since), inbox=inbox
    )
    doc = report_mod.build(catalog.engine, selection)
    if as_json:
        emit_json(doc)
    else:
        report_mod.render(doc)


@app.command()
def show(
    target: Annotated[
        str, typer.Argument(help="A file id, or a path (relative to its inbox or absolute).")
    ],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Everything known about one file: its row, its timeline and its multipart parts."""
    from ingestd import control

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    doc = control.describe(catalog.engine, target)
    if doc is None:
        fail(f"no file matches {shown(target)!r} (try 'ingestd files')")
    if as_json:
        emit_json(doc)
    else:
        control.render_show(doc)


@app.command()
def retry(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Ids of failed files (see 'ingestd files').")
    ] = None,
    config: ConfigOpt = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed file (narrowed by --inbox, --batch).")
    ] = False,
    inbox: InboxOpt = None,
    batch: BatchIdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put failed files back in the queue with their attempts reset.

    Exit code 1 when a named file could not be retried (it is not failed, or does not exist).
    """
    from ingestd import control

    settings, _ = settings_or_exit(config)
    if not ids and not failed:
        fail("name file ids, or use --failed", codes.USAGE)
    catalog = open_catalog_ro(settings)
    outcomes = control.retry(catalog, ids or [], all_failed=failed, inbox=inbox, batch=batch)
    extra = [] if outcomes else ["no failed files match"]
    _end_control(catalog, "retry", outcomes, as_json=as_json, extra=extra)


@app.command()
def cancel(
    ids: Annotated[list[int], typer.Argument(help="Ids of files to cancel.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop queued files from the queue; abort uploading ones (their source stays in place).

    Exit code 1 when a named file could not be cancelled (already finished, or no such file).
    """
    from ingestd import control

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    _end_control(catalog, "cancel", control.cancel(catalog, ids), as_json=as_json)


@app.command()
def prioritize(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Ids of queued files (see 'ingestd files').")
    ] = None,
    config: ConfigOpt = None,
    inbox: Annotated[
        str | None, typer.Option("--inbox", help="Every queued file of this inbox.")
    ] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Every queued file of this batch id.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move queued files to the front of their destination's queue.

    They go next, before files of any priority, first come among themselves (only a file that
    has waited longer than queue.aging_minutes may still go first); a file already uploading
    is not interrupted. Exit code 1 when a named file could not be moved (it is not
    queued, or does not exist).
    """
    from ingestd import control

    settings, _ = settings_or_exit(config)
    if not ids and inbox is None and batch is None:
        fail("name file ids, or use --inbox or --batch", codes.USAGE)
    catalog = open_catalog_ro(settings)
    outcomes = control.prioritize(catalog, ids or [], inbox=inbox, batch=batch)
    extra = [] if outcomes else ["no queued files match"]
    _end_control(catalog, "prioritize", outcomes, as_json=as_json, extra=extra)


@app.command()
def pause(
    config: ConfigOpt = None,
    destination: DestinationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hold the upload lane(s): parts in flight finish, then nothing new starts."""
    _set_paused(config, destination, paused=True, as_json=as_json)


@app.command()
def resume(
    config: ConfigOpt = None,
    destination: DestinationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let paused upload lane(s) go on."""
    _set_paused(config, destination, paused=False, as_json=as_json)


def _set_paused(
    config: Path | None, destinations: list[str] | None, *, paused: bool, as_json: bool
) -> None:
    from ingestd import control

    settings, _ = settings_or_exit(config)
    names = destinations or sorted(settings.destinations)
    unknown = [d for d in names if d not in settings.destinations]
    if unknown:
        fail(
            f"unknown destination(s) {shown(', '.join(unknown))}; configured: "
            f"{', '.join(sorted(settings.destinations))}",
            codes.USAGE,
        )
    catalog = open_catalog_ro(settings)
    catalog.set_paused(names, paused)
    alive = control.live_nodes(catalog.engine)
    if as_json:
        emit_json(
            {
                "action": "pause" if paused else "resume",
                "ok": True,
                "changed": [{"destination": name, "paused": paused} for name in names],
                "refused": [],
                "daemon": {"running": bool(alive), "nodes": alive},
            }
        )
        return
    typer.echo(f"{'paused' if paused else 'resumed'}: {', '.join(names)}")
    typer.echo(control.note_for(alive))


def _end_control(
    catalog: Any, action: str, outcomes: list[Any], *, as_json: bool, extra: list[str] | None = None
) -> None:
    """Print what a file action did (text, or one JSON object); exit 1 when any named file
    was refused."""
    from ingestd import control

    ok = all(o.done for o in outcomes)
    alive = control.live_nodes(catalog.engine)
    if as_json:
        emit_json(
            {
                "action": action,
                "ok": ok,
                "changed": [o.as_json() for o in outcomes if o.done],
                "refused": [o.as_json() for o in outcomes if not o.done],
                "daemon": {"running": bool(alive), "nodes": alive},
            }
        )
    else:
        for line in [*(o.message for o in outcomes), *(extra or [])]:
            typer.echo(line)  # control.py shows names through untrusted.shown
        typer.echo(control.note_for(alive))
    if not ok:
        raise typer.Exit(codes.FAILED)


@app.command()
def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check configuration, catalog, folders, inotify limits, SFTP logins, destinations, clamd, the
    webhook target and the clock.

    Exit code 0 when every check passed, 1 when one failed, 78 when the configuration is
    invalid (nothing else is checked then).
    """
    from ingestd import doctor as doctor_mod

    path = resolve_config_path(config)
    checks = doctor_mod.run_checks(path)
    failures = [c for c in checks if not c.ok]
    if as_json:
        emit_json(
            {
                "ok": not failures,
                "config": str(path),
                "passed": len(checks) - len(failures),
                "failed": len(failures),
                "checks": [
                    {
                        "name": c.name,
                        "ok": c.ok,
                        "detail": redact_text(c.detail),
                        "hint": redact_text(c.hint),
                    }
                    for c in checks
                ],
            }
        )
    else:
        from rich.console import Console

        Console(width=120).print(doctor_mod.render(checks))
        typer.echo(f"{len(checks) - len(failures)} passed, {len(failures)} failed")
    raise typer.Exit(doctor_mod.exit_code(checks))


@app.command()
def cleanup(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be done.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the stale-multipart sweep and retention now, printing what was (or would be) done.

    Exit code 1 when a destination's uploads could not be listed.
    """
    from ingestd import housekeeping
    from ingestd.destinations.factory import build_destination

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    hk = settings.housekeeping
    dests = {name: build_destination(name, cfg) for name, cfg in settings.destinations.items()}
    sweep = housekeeping.sweep_stale_uploads(
        catalog.engine, dests, stale_hours=hk.stale_upload_hours, dry_run=dry_run
    )
    pruned = housekeeping.retention(catalog.engine, days=hk.retention_days, dry_run=dry_run)
    failed_listing = any(result.error for result in sweep)
    if as_json:
        emit_json(
            {
                "ok": not failed_listing,
                "dry_run": dry_run,
                "stale_uploads": [
                    {
                        "destination": result.destination,
                        "error": redact_text(result.error) if result.error else None,
                        "aborted": [
                            {
                                "key": up.key,
                                "upload_id": up.upload_id,
                                "initiated": up.initiated.isoformat(),
                            }
                            for up in result.aborted
                        ],
                        "kept_own": result.kept_own,
                        "kept_young": result.kept_young,
                    }
                    for result in sweep
                ],
                "stale_upload_hours": hk.stale_upload_hours,
                "retention": {
                    "enabled": hk.retention_days > 0,
                    "days": hk.retention_days,
                    "pruned": pruned,
                },
            }
        )
    else:
        _print_cleanup(sweep, pruned, hk, dry_run=dry_run)
    if failed_listing:
        raise typer.Exit(codes.FAILED)


def _print_cleanup(sweep: list[Any], pruned: int, hk: Any, *, dry_run: bool) -> None:
    verb = "would abort" if dry_run else "aborted"
    for result in sweep:
        if result.error:
            error = shown(redact_text(str(result.error)))
            typer.echo(f"{result.destination}: cannot list uploads: {error}")
            continue
        for up in result.aborted:
            typer.echo(
                f"{result.destination}: {verb} stale upload {shown(up.key)} "
                f"(id {shown(up.upload_id)}, started {up.initiated:%Y-%m-%d %H:%M})"
            )
        typer.echo(
            f"{result.destination}: {len(result.aborted)} stale upload(s) {verb}; "
            f"{result.kept_own} in progress kept, {result.kept_young} younger than "
            f"{hk.stale_upload_hours:g} h kept"
        )
    if hk.retention_days <= 0:
        typer.echo("retention: disabled (retention_days = 0)")
    else:
        typer.echo(
            f"retention: {pruned} finished file row(s) older than "
            f"{hk.retention_days:g} days {'would be ' if dry_run else ''}pruned"
        )


@app.command()
def migrate(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only show the current and target revision and the migrations."
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="PostgreSQL: confirm the catalog was dumped (pg_dump) first; needed to migrate.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the catalog's schema revision, this ingestd's, and the migrations between; run them.

    An SQLite catalog is first backed up into <state_dir>/backups (the newest 5 kept). A
    PostgreSQL catalog is migrated only with --yes, after a pg_dump. The daemon's start
    migrates by itself too (backing SQLite up first; PostgreSQL with a warning). Exit code 0
    when done (or nothing to do), 2 on PostgreSQL without --yes, 1 when the backup failed
    (nothing migrated), 69 when the catalog cannot be reached or is newer than this ingestd,
    78 on a configuration error.
    """
    from sqlalchemy.exc import DBAPIError

    from ingestd import upgrade

    settings, _ = settings_or_exit(config)
    url = settings.effective_catalog_url
    engine = None
    try:
        outcome, engine = upgrade.inspect(
            url, backups=settings.state_dir / "backups", dry_run=dry_run, yes=yes
        )
        outcome = upgrade.execute(outcome, engine)
    except DBAPIError as exc:
        fail(str(CatalogUnreachable.of(url, exc.orig or exc)), codes.CATALOG_UNAVAILABLE)
    except CatalogBackupFailed as exc:
        fail(str(exc), codes.FAILED)
    finally:
        if engine is not None:
            engine.dispose()
    if as_json:
        emit_json(upgrade.report_json(outcome))
    else:
        for line in upgrade.report_lines(outcome):
            typer.echo(line, err=outcome.exit_code != codes.OK)
    raise typer.Exit(outcome.exit_code)


@config_app.command("check")
def config_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate the configuration and print the effective settings, secrets masked."""
    from ingestd.config.load import credential_keys
    from ingestd.config.mask import mask_keys

    settings, path = settings_or_exit(config)
    # A value from a systemd credential is never shown, whatever its key.
    data = mask_keys(mask_settings(settings.model_dump(mode="json")), credential_keys(path))
    if as_json:
        emit_json(data)
        return
    typer.echo(f"# {shown(path)}: valid")
    typer.echo(f"# catalog: {shown(mask_url(settings.effective_catalog_url))}")
    typer.echo(json.dumps(data, indent=2, default=str))


@config_app.command("example")
def config_example() -> None:
    """Print the packaged, commented example configuration.

    It runs without editing (one inbox, a directory destination) and 'config check' accepts
    it; start a configuration with: ingestd config example > ingestd.toml
    """
    typer.echo(example_config(), nl=False)


def example_config() -> str:
    """The commented example configuration shipped in the package (data/ingestd.toml)."""
    from importlib.resources import files

    return files("ingestd").joinpath("data", "ingestd.toml").read_text(encoding="utf-8")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(codes.INTERRUPTED)
