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
# each hand-over is a thread wake-up, and an idle daemon's CPU is its wake-ups. So each job
# fires at its own offset modulo SPREAD seconds, golden-ratio steps apart (any number of jobs
# spread evenly): jobs whose periods are multiples of SPREAD (the defaults: 30 s, 60 s,
# minutes, hours) then never fire together, whereas plain fractions of different periods can
# meet (7 s of 30 and 37 s of 60 did). The first run still lies about that fraction into the
# job's own period, so an hourly job does not run at every start.
_GOLDEN = 0.6180339887
SPREAD = 30.0


def first_delay(index: int, every: float) -> float:
    """Seconds from start to the first run of the ``index``-th interval job."""
    phase = ((index + 1) * _GOLDEN) % 1.0
    return (phase * every // SPREAD) * SPREAD + phase * min(every, SPREAD)


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
                first = now + timedelta(seconds=first_delay(index, job.every))
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
