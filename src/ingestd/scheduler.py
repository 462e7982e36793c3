"""Scheduled jobs (APScheduler): rescans, stale-multipart sweep, retention, batches, summary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("ingestd.scheduler")
# Interval jobs of the same period, all scheduled at start-up, would fire at the same instant
# forever, beside the main loop's heartbeat (every 10 s from start), and fight over the GIL:
# each hand-over is a thread wake-up, and an idle daemon's CPU is its wake-ups. So each job's
# first run is at a different fraction of its period (golden-ratio steps spread any number).
_GOLDEN = 0.6180339887


@dataclass(frozen=True)
class Job:
    """One recurring job: ``every`` seconds, or daily at ``at`` ("HH:MM", local time)."""

    name: str
    run: Callable[[], object]
    every: float | None = None
    at: str | None = None


def _guarded(job: Job) -> Callable[[], None]:
    def run() -> None:
        try:
            job.run()
        except Exception:
            # A failing job must not stop the others or the daemon; it runs again next time.
            log.exception("scheduled job %s failed", job.name)

    return run


class Scheduler:
    """Runs jobs in background threads, one instance of each at a time, coalescing misses."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            daemon=True,
        )

    def replace(self, jobs: list[Job]) -> None:
        """Install ``jobs``, replacing any with the same names (configuration reload)."""
        now = datetime.now().astimezone()
        for index, job in enumerate(jobs):
            if job.at:
                hour, minute = (int(x) for x in job.at.split(":"))
                trigger: object = CronTrigger(hour=hour, minute=minute)
            elif job.every:
                phase = ((index + 1) * _GOLDEN) % 1.0
                first = now + timedelta(seconds=job.every * phase)
                trigger = IntervalTrigger(seconds=job.every, start_date=first)
            else:
                if self._scheduler.get_job(job.name):
                    self._scheduler.remove_job(job.name)
                continue
            self._scheduler.add_job(
                _guarded(job), trigger, id=job.name, name=job.name, replace_existing=True
            )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def names(self) -> list[str]:
        return sorted(j.id for j in self._scheduler.get_jobs())
