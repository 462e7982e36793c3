"""Scheduled jobs (APScheduler): rescans, stale-multipart sweep, retention, batches, summary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("ingestd.scheduler")


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
        for job in jobs:
            if job.at:
                hour, minute = (int(x) for x in job.at.split(":"))
                trigger: object = CronTrigger(hour=hour, minute=minute)
            elif job.every:
                trigger = IntervalTrigger(seconds=job.every)
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
