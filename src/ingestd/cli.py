"""The ``ingestd`` command line.

Whatever it prints of untrusted text (names, paths, server errors) goes through
``untrusted.shown``; JSON keeps exact values with nothing a terminal interprets left raw
(``untrusted.json_safe``); configuration and URLs are masked (``redact``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ingestd import __version__
from ingestd.config import Settings, load_settings, resolve_config_path
from ingestd.errors import CatalogMissing, CatalogOutdated, ConfigError
from ingestd.redact import mask_settings, mask_url, redact_text
from ingestd.untrusted import json_safe, shown

app = typer.Typer(
    name="ingestd",
    help="Watch drop folders; validate, de-duplicate and upload every file exactly once.",
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"ingestd: {shown(redact_text(message))}", err=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> tuple[Settings, Path]:
    """Load the configuration, or print every problem and exit 2."""
    path = resolve_config_path(config)
    try:
        return load_settings(path), path
    except ConfigError as exc:
        typer.echo(f"ingestd: invalid configuration ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            typer.echo(f"  {shown(redact_text(problem))}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def open_catalog_ro(settings: Settings) -> Any:
    from ingestd.catalog.repo import Catalog

    try:
        return Catalog.open(settings.effective_catalog_url, migrate=False)
    except (CatalogMissing, CatalogOutdated) as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    typer.echo(json_safe(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


@app.command()
def run(
    config: ConfigOpt = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="auto, human or json.")
    ] = None,
) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM (SIGHUP reloads the config)."""
    _serve(config, once=False, log_format=log_format)


@app.command()
def scan(
    config: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Process what is there now, then exit.")
    ] = False,
    log_format: Annotated[str | None, typer.Option("--log-format")] = None,
) -> None:
    """Take everything now in the inboxes through the pipeline, then exit.

    Exit code 0 when every file ended uploaded, duplicate or rejected; 1 when any failed;
    2 on a configuration error.
    """
    if not once:
        fail("scan needs --once (use 'ingestd run' for the continuous daemon)", EXIT_CONFIG)
    _serve(config, once=True, log_format=log_format)


def _serve(config: Path | None, *, once: bool, log_format: str | None) -> None:
    from ingestd import logs, memory
    from ingestd.daemon import Daemon

    memory.limit_malloc_arenas()  # before any thread starts
    settings, path = settings_or_exit(config)
    logs.setup(fmt=log_format or settings.log_format, level=settings.log_level)
    code = Daemon(settings=settings, config_path=path, once=once).run()
    raise typer.Exit(code)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
) -> None:
    """What ingestd is doing: daemon, destinations, counts per state, current upload, queue."""
    from ingestd import status as status_mod
    from ingestd.catalog.reader import open_reader

    settings, _ = settings_or_exit(config)
    try:
        reader = open_reader(settings.effective_catalog_url)
    except (CatalogMissing, CatalogOutdated, ValueError) as exc:
        fail(str(exc))
    with reader:  # also before --watch: a missing catalog is said plainly, not in a redraw
        data = status_mod.collect(reader, settings)
    if watch:
        status_mod.watch(settings)
        return
    if as_json:
        emit_json(data)
    else:
        status_mod.render(data)


@app.command()
def files(
    config: ConfigOpt = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="Repeatable.")] = None,
    inbox: Annotated[str | None, typer.Option("--inbox")] = None,
    batch: Annotated[int | None, typer.Option("--batch")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List files with their state, reason and object key."""
    from ingestd import status as status_mod
    from ingestd.catalog import queries
    from ingestd.states import FileState

    settings, _ = settings_or_exit(config)
    for s in state or []:
        if s not in {x.value for x in FileState}:
            fail(f"unknown state {shown(s)!r}; states: {', '.join(x.value for x in FileState)}")
    catalog = open_catalog_ro(settings)
    rows = queries.list_files(
        catalog.engine,
        states=state,
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
    inbox: Annotated[str | None, typer.Option("--inbox")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
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
    batch: Annotated[str | None, typer.Option("--batch", help="A batch id or 'latest'.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time.")] = None,
    inbox: Annotated[str | None, typer.Option("--inbox")] = None,
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
            fail(f"--batch takes a batch id or 'latest', not {shown(batch)!r}")
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
    ids: Annotated[list[int] | None, typer.Argument(help="File ids.")] = None,
    config: ConfigOpt = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed file.")] = False,
    inbox: Annotated[str | None, typer.Option("--inbox")] = None,
    batch: Annotated[int | None, typer.Option("--batch")] = None,
) -> None:
    """Put failed files back in the queue with their attempts reset."""
    from ingestd import control

    settings, _ = settings_or_exit(config)
    if not ids and not failed:
        fail("name file ids, or use --failed", 2)
    catalog = open_catalog_ro(settings)
    messages, ok = control.retry(catalog, ids or [], all_failed=failed, inbox=inbox, batch=batch)
    _end_control(catalog, messages, ok)


@app.command()
def cancel(
    ids: Annotated[list[int], typer.Argument(help="File ids.")],
    config: ConfigOpt = None,
) -> None:
    """Drop queued files from the queue; abort uploading ones (their source stays in place)."""
    from ingestd import control

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    messages, ok = control.cancel(catalog, ids)
    _end_control(catalog, messages, ok)


@app.command()
def pause(
    config: ConfigOpt = None,
    destination: Annotated[list[str] | None, typer.Option("--destination", "-d")] = None,
) -> None:
    """Hold the upload lane(s): parts in flight finish, then nothing new starts."""
    _set_paused(config, destination, paused=True)


@app.command()
def resume(
    config: ConfigOpt = None,
    destination: Annotated[list[str] | None, typer.Option("--destination", "-d")] = None,
) -> None:
    """Let paused upload lane(s) go on."""
    _set_paused(config, destination, paused=False)


def _set_paused(config: Path | None, destinations: list[str] | None, *, paused: bool) -> None:
    settings, _ = settings_or_exit(config)
    names = destinations or sorted(settings.destinations)
    unknown = [d for d in names if d not in settings.destinations]
    if unknown:
        fail(
            f"unknown destination(s) {shown(', '.join(unknown))}; configured: "
            f"{', '.join(sorted(settings.destinations))}"
        )
    catalog = open_catalog_ro(settings)
    catalog.set_paused(names, paused)
    verb = "paused" if paused else "resumed"
    _end_control(catalog, [f"{verb}: {', '.join(names)}"], True)


def _end_control(catalog: Any, messages: list[str], ok: bool) -> None:
    from ingestd import control

    for line in messages:
        typer.echo(line)  # control.py shows names through untrusted.shown
    typer.echo(control.daemon_note(catalog.engine))
    if not ok:
        raise typer.Exit(1)


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Check configuration, catalog, folders, inotify limits, destinations and the clock."""
    from rich.console import Console

    from ingestd import doctor as doctor_mod

    checks = doctor_mod.run_checks(resolve_config_path(config))
    Console(width=120).print(doctor_mod.render(checks))
    failures = [c for c in checks if not c.ok]
    typer.echo(f"{len(checks) - len(failures)} passed, {len(failures)} failed")
    if failures:
        raise typer.Exit(1)


@app.command()
def cleanup(
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be done.")
    ] = False,
) -> None:
    """Run the stale-multipart sweep and retention now, printing what was (or would be) done."""
    from ingestd import housekeeping
    from ingestd.destinations.factory import build_destination

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    hk = settings.housekeeping
    dests = {name: build_destination(name, cfg) for name, cfg in settings.destinations.items()}
    verb = "would abort" if dry_run else "aborted"
    failed_listing = False
    for result in housekeeping.sweep_stale_uploads(
        catalog.engine, dests, stale_hours=hk.stale_upload_hours, dry_run=dry_run
    ):
        if result.error:
            error = shown(redact_text(str(result.error)))
            typer.echo(f"{result.destination}: cannot list uploads: {error}")
            failed_listing = True
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
    pruned = housekeeping.retention(catalog.engine, days=hk.retention_days, dry_run=dry_run)
    if hk.retention_days <= 0:
        typer.echo("retention: disabled (retention_days = 0)")
    else:
        typer.echo(
            f"retention: {pruned} finished file row(s) older than "
            f"{hk.retention_days:g} days {'would be ' if dry_run else ''}pruned"
        )
    if failed_listing:
        raise typer.Exit(1)


@config_app.command("check")
def config_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate the configuration and print the effective settings, secrets masked."""
    settings, path = settings_or_exit(config)
    data = mask_settings(settings.model_dump(mode="json"))
    if as_json:
        emit_json(data)
        return
    typer.echo(f"# {shown(path)}: valid")
    typer.echo(f"# catalog: {shown(mask_url(settings.effective_catalog_url))}")
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
