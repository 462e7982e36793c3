"""Wiring: start order, the main loop (heartbeat, rescans, watchdog), signals, reload, stop.

Over 400 lines: start, reload and stop must build, rebuild and tear down the same set of
stages in a matching order, which is easiest to check side by side. Health, the watchdog and
the shutdown are one loop over the stages' workers (``_workers``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ingestd import __version__, housekeeping, redact
from ingestd import status as status_mod
from ingestd.catalog import db, maintenance, queries
from ingestd.catalog.changes import ChangeWatch
from ingestd.catalog.outbox import CatalogOutbox
from ingestd.catalog.reader import open_reader
from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import DestinationConfig, Settings, load_settings, named_secret
from ingestd.destinations.base import Destination
from ingestd.destinations.factory import KeyChecks, build_destination, md5_at_intake_below
from ingestd.errors import ConfigError
from ingestd.intake import Intake
from ingestd.metrics import Metrics
from ingestd.page.source import PageSource
from ingestd.pipeline.lane import Lane, LaneGroup
from ingestd.pipeline.lane.reserved import ReservedKeys
from ingestd.pipeline.post import PostWorker
from ingestd.pipeline.worker import Worker, stop_all
from ingestd.scheduler import Job, Scheduler
from ingestd.sdnotify import Notifier
from ingestd.sources.build import Source, build_pullers, build_sources
from ingestd.states import FileState
from ingestd.untrusted import shown
from ingestd.webhooks import WebhookWorker, on_failure

if TYPE_CHECKING:
    from ingestd.http import HttpServer  # imported when HTTP is configured

log = logging.getLogger("ingestd.daemon")
# watchdog warns when a watch for a just-created folder is scheduled twice; harmless.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
HEARTBEAT_SECONDS = 10.0  # status calls a daemon stopped after 30 s without one
INTAKE_STOP_SECONDS = 2.0
WEBHOOK_STOP_SECONDS = 5.0  # a delivery in progress may finish; undelivered items stay queued


def md5_thresholds(settings: Settings) -> dict[str, int]:
    """Per destination, the size below which intake computes the MD5 with the fingerprint (the
    destination's policy, handed to intake as plain values)."""
    return {name: md5_at_intake_below(cfg) for name, cfg in settings.destinations.items()}


class Daemon:
    """The long-running service (``ingestd run``) and the one-shot ``ingestd scan --once``."""

    def __init__(
        self,
        *,
        settings: Settings,
        config_path: Path | None,
        once: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.once = once
        self.notifier = notifier or Notifier()
        self.owner = settings.node_name
        self.metrics = Metrics()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload = threading.Event()
        self._signals = 0
        self._started_at = time.time()
        self._lanes: dict[str, LaneGroup] = {}
        self._observer: BaseObserver | None = None
        self._http: HttpServer | None = None
        self._catalog_ok = True
        self._catalog_file: db.FileIdentity | None = None
        self._exit_code = 0
        self._watched: set[str] = set()
        self._webhooks: WebhookWorker | None = None
        self._key_checks = KeyChecks()
        self.scheduler = Scheduler()

    # ----------------------------------------------------------------- start

    def run(self) -> int:
        """Run until stopped (or, with ``once``, until every file found needs nothing more:
        uploaded or ended in intake, and its post-action done)."""
        self._install_signals()
        self._start()
        try:
            code = self._loop()
        finally:
            self._shutdown()
        return code

    def _start(self) -> None:
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        # An SQLite catalog is backed up into state_dir/backups before any schema migration.
        self.catalog = Catalog.open(s.effective_catalog_url, backups=s.state_dir / "backups")
        self._catalog_file = db.sqlite_identity(s.effective_catalog_url)
        self._beat_changes = ChangeWatch.of(self.catalog.engine)
        self._queued: int | None = None
        self.outbox = CatalogOutbox(self.catalog.engine)
        self.metrics.watch_catalog(lambda: queries.queue_gauges(self.catalog.engine))
        self.metrics.declare(inboxes=[i.name for i in s.inboxes], destinations=s.destinations)
        self.pullers = build_pullers(s)
        # Its first pass does what a crash left due (post-actions recorded but not confirmed).
        self.post = PostWorker(catalog=self.catalog, settings=s, remotes=self.pullers)
        resumed = self.catalog.reclaim_expired(owner=self.owner)
        if resumed:
            log.info("resuming %d interrupted upload(s): %s", len(resumed), resumed)
        self.sources = build_sources(s, self._hint)
        self.intake = Intake(
            catalog=self.catalog,
            settings=s,
            sources=self.sources,
            on_queued=self._wake_lane,
            observer=self.metrics,
            md5_below=md5_thresholds(s),
            rejection_notice=self._failure_notice,
            notice_written=self._wake_webhooks,
            post_due=self.post.due,
        )
        for name, cfg in s.destinations.items():
            self._add_lane(name, self._build_destination(name, cfg))
        self.post.start()
        self.intake.start()
        self.intake.rescan()
        for puller in self.pullers.values():
            puller.start()
        self._start_webhooks()
        if not self.once:
            self._observer = Observer()
            for source in self.sources.values():
                self._watch(source)
            self._observer.start()
            self._start_http()
            self.scheduler.replace(self._jobs())
            self.scheduler.start()
        self._beat()
        self.notifier.ready(self._status_line())
        log.info(
            "ingestd %s started: %d inbox(es), %d destination(s), catalog %s",
            __version__,
            len(s.inboxes),
            len(s.destinations),
            redact.mask_url(s.effective_catalog_url),
        )

    def _jobs(self) -> list[Job]:
        """The housekeeping jobs of the current configuration."""
        s, hk = self.settings, self.settings.housekeeping

        def sweep() -> None:
            dests = {name: lane.destination for name, lane in self._lanes.items()}
            for result in housekeeping.sweep_stale_uploads(
                self.catalog.engine, dests, stale_hours=hk.stale_upload_hours
            ):
                for upload in result.aborted:
                    log.info(
                        "aborted stale multipart upload %s of %s on %s (started %s)",
                        upload.upload_id,
                        upload.key,
                        result.destination,
                        upload.initiated,
                    )

        def retention() -> None:
            pruned = housekeeping.retention(self.catalog.engine, days=hk.retention_days)
            if pruned:
                log.info(
                    "retention: pruned %d finished file row(s) older than %g days",
                    pruned,
                    hk.retention_days,
                )

        jobs = [
            Job("rescan", self._rescan, every=s.rescan_seconds),
            Job("stale-multipart-sweep", sweep, every=hk.sweep_interval_minutes * 60),
            Job("retention", retention, every=hk.retention_interval_hours * 3600),
            Job(
                "close-batches",
                lambda: housekeeping.close_batches(
                    self.catalog.engine,
                    self._outbox_for("batch_closed"),
                    idle_seconds=s.batch_idle_seconds,
                    node=self.owner,
                ),
                every=hk.batch_check_seconds,
            ),
            Job(
                "daily-summary",
                lambda: housekeeping.summary(
                    self.catalog.engine, self._outbox_for("daily_summary"), s
                ),
                at=hk.daily_summary_at or None,
            ),
        ]
        if any(cfg.bandwidth_windows for cfg in s.destinations.values()):
            # Only windows change a rate over time; a flat limit is set when the destination
            # is built (at start and reload), so without windows an idle daemon is not woken.
            jobs.append(Job("bandwidth", self._apply_bandwidth, every=30.0))
        return jobs

    def _apply_bandwidth(self) -> None:
        """Follow the bandwidth windows: each destination's limiter gets the rate of now."""
        now = datetime.now()
        for name, lane in self._lanes.items():
            cfg = self.settings.destinations.get(name)
            limiter = getattr(lane.destination, "limiter", None)
            if cfg is not None and limiter is not None:
                limiter.set_rate(cfg.bandwidth_schedule().bytes_per_second_at(now))

    def _rescan(self) -> None:
        self._rewatch()
        self.intake.rescan()

    def _outbox_for(self, event: str) -> CatalogOutbox | None:
        hooks = self.settings.webhooks
        if not hooks.url or event not in hooks.events:
            return None
        return self.outbox

    def _start_webhooks(self) -> None:
        hooks = self.settings.webhooks
        if self._webhooks is not None:
            self._webhooks.stop(timeout=WEBHOOK_STOP_SECONDS)
            self._webhooks = None
        if not hooks.url:
            return
        self._webhooks = WebhookWorker(
            self.outbox,
            url=hooks.url,
            timeout=hooks.timeout_seconds,
            secret=hooks.secret.get_secret_value() if hooks.secret else None,
        )
        self._webhooks.start()

    def _failure_notice(self, row: FileRow) -> tuple[str, Mapping[str, Any]] | None:
        """The ``file_failed`` notification of a failed or rejected file, when configured; the
        catalog writes it in the transaction of the failure (so a crash cannot lose it)."""
        if self._outbox_for("file_failed") is None:
            return None
        return "file_failed", on_failure(row, node=self.owner, at=time.time())

    def _wake_webhooks(self) -> None:
        if self._webhooks is not None:
            self._webhooks.wake()

    def _build_destination(self, name: str, cfg: DestinationConfig) -> Destination:
        """The destination, with its key check decided (an S3 one's conditional-write probe
        runs here, once: docs/ARCHITECTURE.md, "S3 compatibility"), logged and recorded."""
        dest = build_destination(name, cfg)
        settled = self._key_checks.settle(name, cfg, dest)
        if settled is None:
            return dest
        check, fresh = settled
        if fresh:
            log.log(
                logging.WARNING if check.failed else logging.INFO,
                "destination %s: %s: %s",
                name,
                check.method,
                check.reason,
            )
        try:
            self.catalog.record_key_check(name, conditional=check.conditional, reason=check.reason)
        except Exception:
            log.exception("destination %s: could not record its key check", name)
        return dest

    def _add_lane(self, name: str, destination: Destination) -> None:
        group = LaneGroup(
            name=name,
            catalog=self.catalog,
            owner=self.owner,
            settings=self.settings,
            destination=destination,
            make_slot=functools.partial(self._lane_slot, name),
        )
        self._lanes[name] = group
        group.start()

    def _lane_slot(
        self,
        name: str,
        slot: int,
        settings: Settings,
        destination: Destination,
        reserved: ReservedKeys,
    ) -> Lane:
        return Lane(
            name=name,
            destination=destination,
            catalog=self.catalog,
            settings=settings,
            owner=self.owner,
            observer=self.metrics,
            failure_notice=self._failure_notice,
            notice_written=self._wake_webhooks,
            rediscovered=self.intake.rediscover,
            # The one-shot scan is done-checked when a queue runs dry, not only at its next
            # poll (after each file would cost a catalog count each).
            drained=self._wake.set if self.once else lambda: None,
            post_due=self.post.due,
            slot=slot,
            releases_lease=False,
            reserved=reserved,
        )

    def _watch(self, source: Source) -> None:
        if self._observer is None or source.name in self._watched:
            return
        problem = source.root_ok()
        if problem:
            log.warning("inbox %s: %s (will look again at each rescan)", source.name, problem)
            return
        try:
            source.watch(self._observer)
        except OSError as exc:
            log.warning("inbox %s: cannot watch (%s); relying on rescans", source.name, exc)
            return
        self._watched.add(source.name)

    def _rewatch(self) -> None:
        """An inbox root that was missing, or deleted and re-created, gets its watch back."""
        for source in self.sources.values():
            if source.name in self._watched and source.root_ok():
                source.unwatch()
                self._watched.discard(source.name)
            self._watch(source)

    def _start_http(self) -> None:
        if not self.settings.http_listen:
            return
        from ingestd.http import start_http_server

        token_env = self.settings.http_token_env
        token = named_secret(token_env)
        if token_env and not token:
            log.error(
                "http_token_env %s: no such variable or credential (or it is empty); /status and"
                " /metrics refuse every request",
                token_env,
            )
        try:
            self._http = start_http_server(
                self.settings.http_listen,
                daemon=self,
                token=token,
                require_token=bool(token_env),
            )
        except OSError as exc:
            log.error(
                "cannot listen on %s: %s; HTTP endpoints disabled", self.settings.http_listen, exc
            )

    def _hint(self, inbox: str, relpath: str) -> None:
        self.intake.hint(inbox, relpath)

    def _wake_lane(self, destination: str) -> None:
        lane = self._lanes.get(destination)
        if lane is not None:
            lane.wake()

    # ----------------------------------------------------------------- loop

    def _loop(self) -> int:
        next_beat = time.monotonic()
        watchdog_every = self.notifier.watchdog_interval()
        next_ping = time.monotonic()
        while not self._stop.is_set():
            # The one-shot scan is woken when a lane's queue runs dry and polls as well (files
            # that end in intake never reach a lane); the daemon sleeps until its next
            # heartbeat or watchdog ping (a signal wakes it at once): an idle daemon's CPU is
            # mostly its wake-ups.
            due = next_beat if watchdog_every is None else min(next_beat, next_ping)
            self._wake.wait(0.25 if self.once else max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if watchdog_every is not None and now >= next_ping:
                # Unhealthy (a loop is stuck): no ping, so systemd restarts us; look again soon.
                healthy = self.healthy()
                if healthy:
                    self.notifier.watchdog()
                next_ping = now + (watchdog_every if healthy else 1.0)
            if now >= next_beat:
                self._beat()
                next_beat = now + HEARTBEAT_SECONDS
            if self.once and self._once_done():
                return 1 if queries.failed_since(self.catalog.engine, self._started_at) else 0
        return self._exit_code

    def _once_done(self) -> bool:
        # A lane still draining its queue, or post-actions this process is still doing, are
        # not done: no need to count the catalog's outstanding rows, 4 times a second (4 % of
        # a 10,000-file scan's CPU went to that).
        if self.intake.scans_completed < 1 or self.intake.busy:
            return False
        if any(lane.draining for lane in self._lanes.values()) or self.post.busy:
            return False
        inboxes = [i.name for i in self.settings.inboxes]
        return self.catalog.outstanding_count(inboxes) == 0

    def _workers(self) -> list[Worker]:
        """The pipeline's stages whose loops the watchdog watches and the shutdown stops."""
        return [self.intake, *(lane for group in self._lanes.values() for lane in group), self.post]

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry of this daemon's metrics (served at /metrics)."""
        return self.metrics.registry

    def healthy(self) -> bool:
        """Every stage's loop (intake, the lanes, post-actions) ran recently (not stuck)."""
        limit = max(60.0, self.settings.queue.lease_seconds)
        now = time.monotonic()
        return all(worker.stalled_for(now) < limit for worker in self._workers())

    def readiness_problems(self) -> list[str]:
        """Why the daemon cannot do its job right now (empty when ready)."""
        problems: list[str] = []
        if not self._catalog_ok:
            problems.append("catalog is not writable (last heartbeat failed)")
        for name, lane in self._lanes.items():
            if lane.down_reason:
                problems.append(f"destination {name}: {lane.down_reason}")
        for name, puller in self.pullers.items():
            if not puller.up:
                problems.append(f"inbox {name}: SFTP server down: {puller.last_error}")
        return problems

    def status_snapshot(self) -> dict[str, Any]:
        """What ``/status`` serves: ``ingestd status --json``'s document, read from the catalog
        the daemon opened at start (a reload does not move it)."""
        url = self.catalog.engine.url.render_as_string(hide_password=False)
        with open_reader(url) as reader:
            return status_mod.collect(reader, self.settings)

    @property
    def page_source(self) -> PageSource:
        """What the dashboard's pages read: this daemon's catalog and its current settings."""
        return PageSource(engine=self.catalog.engine, settings=self.settings, catalog=self.catalog)

    def _beat(self) -> None:
        problem = db.identity_problem(self._catalog_file)
        if problem is not None:
            log.critical(
                "%s while ingestd ran: stopping, as every record written from now on would be "
                "lost (restore it from a backup, or start ingestd again to begin a new one)",
                problem,
            )
            self._exit_code = 1
            self._stop.set()
            return
        line = self._status_line()
        try:
            self.catalog.heartbeat(
                node=self.owner,
                pid=os.getpid(),
                host=socket.gethostname(),
                version=__version__,
                started_at=self._started_at,
                detail=line,
            )
            self._publish_inbox_health()
            self._beat_changes.changed()  # our own commits are no news to the next heartbeat
            self._catalog_ok = True
        except Exception:
            self._catalog_ok = False
            log.exception("heartbeat failed")
        self.notifier.status(line)

    def _publish_inbox_health(self) -> None:
        for name, puller in self.pullers.items():
            maintenance.record_inbox_health(
                self.catalog.engine,
                name,
                up=puller.up,
                down_since=puller.down_since,
                error=puller.last_error,
                now=time.time(),
            )
            self.metrics.inbox_up(name, puller.up)

    def _status_line(self) -> str:
        """systemd's status line. Uploads are counted since start, by this process: counting
        the catalog's uploaded rows every heartbeat read the whole table (1,000,000 rows took
        a third of a second, every 10 s, forever); ``queued`` is an index range, cheap."""
        uploading = [row for group in self._lanes.values() for row in group.in_flight()]
        # systemctl status prints it to a terminal: the name escaped like everywhere else.
        current = f", uploading {shown(uploading[0].relpath)}" if uploading else ""
        if len(uploading) > 1:
            current += f" and {len(uploading) - 1} more"
        try:
            # Counted again only when someone committed since the last heartbeat: an idle
            # daemon's heartbeat reads nothing (_beat absorbs its own commit; one by another
            # process in that instant leaves this informational count stale until the next).
            if self._queued is None or self._beat_changes.changed():
                self._queued = queries.count_in_state(self.catalog.engine, FileState.QUEUED)
        except Exception:
            return "running"
        queued = self._queued
        done = self.metrics.uploads_since_start()
        return f"{queued} queued, {done} uploaded since start{current}"

    # ----------------------------------------------------------------- signals and reload

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda _s, _f: self._request_reload())

    def _request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # Second signal: leave now. Every acknowledged part is already in the catalog.
            os._exit(130)
        log.info(
            "received %s; finishing parts in flight (up to %.0fs)",
            signal.Signals(signum).name,
            self.settings.stop_timeout_seconds,
        )
        self._stop.set()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def reload(self) -> None:
        """Re-read the configuration; keep the running one if the new one is invalid."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload rejected: %s", problem)
            log.error("keeping the running configuration")
            self.notifier.ready(self._status_line())
            return
        self._apply(new)
        for puller in self.pullers.values():
            puller.start()
        self.notifier.ready(self._status_line())
        log.info(
            "configuration reloaded: %d inbox(es), %d destination(s)",
            len(new.inboxes),
            len(new.destinations),
        )

    def _apply(self, new: Settings) -> None:
        for source in self.sources.values():
            source.unwatch()
        self._watched.clear()
        self.settings = new
        for puller in self.pullers.values():
            puller.close()
        self.pullers = build_pullers(new)
        self.sources = build_sources(new, self._hint)
        for source in self.sources.values():
            self._watch(source)
        self.post.reconfigure(settings=new, remotes=self.pullers)
        self.intake.reconfigure(settings=new, sources=self.sources, md5_below=md5_thresholds(new))
        for name in list(self._lanes):
            if name not in new.destinations:
                self._lanes.pop(name).stop(timeout=new.stop_timeout_seconds)
        for name, cfg in new.destinations.items():
            dest = self._build_destination(name, cfg)
            if name in self._lanes:
                self._lanes[name].reconfigure(settings=new, destination=dest)
            else:
                self._add_lane(name, dest)
        self.metrics.declare(inboxes=[i.name for i in new.inboxes], destinations=new.destinations)
        self.scheduler.replace(self._jobs())
        self._start_webhooks()

    # ----------------------------------------------------------------- stop

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.scheduler.stop()
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        if self._observer is not None:
            self._observer.stop()
        # Every stage but post-actions is asked at once, then joined: intake briefly (a file
        # being hashed is hashed again at start), the lanes within what is left of the stop
        # timeout (parts in flight may finish). The post-action stage stops last, so what
        # intake and the lanes finished meanwhile still gets its post-action (its remote part
        # recorded in the SFTP inbox's store, which closes after it).
        for worker in self._workers():
            if worker is not self.post:
                worker.request_stop()
        self.intake.stop(timeout=INTAKE_STOP_SECONDS)
        for puller in self.pullers.values():
            puller.request_stop()  # cuts a download at once; joined by close() below
        stop_all(
            [lane for group in self._lanes.values() for lane in group],
            timeout=max(0.1, deadline - time.monotonic()),
        )
        for group in self._lanes.values():
            group.release()
        self.post.stop(timeout=max(1.0, deadline - time.monotonic()))
        for puller in self.pullers.values():
            puller.close()
        if self._http is not None:
            self._http.close()
        if self._webhooks is not None:
            self._webhooks.stop(timeout=WEBHOOK_STOP_SECONDS)
        try:
            self.catalog.heartbeat(
                node=self.owner,
                pid=os.getpid(),
                host=socket.gethostname(),
                version=__version__,
                started_at=self._started_at,
                detail="stopped",
                stopped=True,
            )
        except Exception:
            log.exception("final heartbeat failed")
        self._beat_changes.close()
        log.info("ingestd stopped")
