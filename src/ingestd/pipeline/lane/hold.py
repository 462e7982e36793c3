"""Why a lane waits instead of claiming: destination down (with probe backoff), downstream gate
busy, cooldown after a file, paused by the operator.

Each check answers with a wait in seconds (None: no reason to wait) and records the lane's
health in the catalog; the lane's loop does the waiting, so a hold never blocks its thread
against a stop (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import time

from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.destinations.base import Destination
from ingestd.errors import DestinationDown, DestinationMisconfigured
from ingestd.gate import Gate, busy_wait
from ingestd.observers import LaneObserver
from ingestd.retry import Backoff

log = logging.getLogger("ingestd.lane")
PAUSE_CHECK_SECONDS = 0.25


class Hold:
    """The reasons one lane holds, and what it last told the catalog about each."""

    def __init__(
        self,
        *,
        name: str,
        catalog: Catalog,
        settings: Settings,
        destination: Destination,
        observer: LaneObserver,
    ) -> None:
        self._name = name
        self._catalog = catalog
        self._settings = settings
        self._dest = destination
        self._observer = observer
        self._probe = Backoff(cap=settings.queue.probe_max_seconds)
        self.down = False
        self.down_reason: str | None = None
        self._gate_busy = False
        self._cooldown_until: float | None = None  # monotonic
        self._pause_cached = False
        self._pause_checked_at = -PAUSE_CHECK_SECONDS

    def reconfigure(self, *, settings: Settings, destination: Destination) -> None:
        self._settings = settings
        self._dest = destination

    # ----------------------------------------------------------------- paused

    def note_paused(self, paused: bool) -> None:
        """The pause flag as read by the idle lane's poll (no read of its own needed)."""
        self._pause_cached, self._pause_checked_at = paused, time.monotonic()

    def paused(self) -> bool:
        """The operator's pause flag, read at most every PAUSE_CHECK_SECONDS between files (an
        upload in progress is watched by the lease keeper)."""
        now = time.monotonic()
        # A paused lane reads the flag on every (one-second) turn, so a resume is seen at once.
        if self._pause_cached or now >= self._pause_checked_at + PAUSE_CHECK_SECONDS:
            self._pause_cached = self._catalog.is_paused(self._name)
            self._pause_checked_at = now
        return self._pause_cached

    # ----------------------------------------------------------------- destination down

    def probe_wait(self) -> float | None:
        """For a lane held by a down destination: probe it; the backoff to wait while it is
        still down, None once it answers."""
        if not self.down:
            return None
        try:
            self._dest.probe()
        except (DestinationDown, DestinationMisconfigured) as exc:
            self.mark_down(exc)
            return self._probe.failed()
        self.mark_up()
        return None

    def mark_down(self, exc: Exception) -> None:
        hold = "misconfigured" if isinstance(exc, DestinationMisconfigured) else "down"
        if not self.down:
            log.warning("destination %s %s: %s; holding the lane", self._name, hold, exc)
        self.down = True
        self.down_reason = f"{hold}: {exc}"
        self._catalog.set_lane_health(self._name, up=False, error=str(exc), hold=hold)
        self._observer.destination_up(self._name, False)

    def mark_up(self) -> None:
        if self.down:
            log.info("destination %s is reachable again; resuming", self._name)
        self.down = False
        self.down_reason = None
        self._probe.reset()
        self._catalog.set_lane_health(self._name, up=True)
        self._observer.destination_up(self._name, True)

    # ----------------------------------------------------------------- chaining

    def holds_between_files(self) -> bool:
        """Whether anything may hold the lane between one file and the next: a cooldown, a
        downstream gate to ask, the destination down, or the operator's pause (its cached
        flag, read at most every PAUSE_CHECK_SECONDS). When nothing does, the lane claims its
        next file in the transaction that records the last one's success."""
        cfg = self._settings.destinations[self._name]
        return (
            self._settings.queue.cooldown_seconds > 0
            or bool(cfg.ready_command or cfg.ready_url)
            or self.down
            or self.paused()
        )

    # ----------------------------------------------------------------- downstream gate

    def gate_wait(self) -> float | None:
        """Ask the downstream gate, when one is configured (only when a file is waiting): the
        poll interval to wait while it is busy, None when it is open."""
        cfg = self._settings.destinations[self._name]
        gate = Gate(
            ready_command=tuple(cfg.ready_command),
            ready_url=cfg.ready_url,
            timeout=cfg.gate_timeout_seconds,
            env=(("INGESTD_DESTINATION", self._name),),
        )
        if not gate.enabled:
            return None
        result = gate.check()
        if result.ready:
            if self._gate_busy:
                log.info("lane %s: downstream ready again", self._name)
                self._catalog.set_lane_health(self._name, up=True)
            self._gate_busy = False
            return None
        if not self._gate_busy:
            log.info("lane %s: downstream busy (%s); waiting", self._name, result.reason)
        self._gate_busy = True
        self._catalog.set_lane_health(self._name, up=True, hold=f"downstream busy: {result.reason}")
        return busy_wait(result, poll=cfg.gate_poll_seconds)

    # ----------------------------------------------------------------- cooldown

    def start_cooldown(self) -> float | None:
        """After an upload: record the cooldown (status shows it); the seconds to wait."""
        seconds = self._settings.queue.cooldown_seconds
        if seconds <= 0:
            return None
        self._catalog.set_cooldown(self._name, time.time() + seconds)
        self._cooldown_until = time.monotonic() + seconds
        return seconds

    def cooldown_wait(self) -> float | None:
        """Seconds of cooldown left; None (and the catalog told) once it is over."""
        if self._cooldown_until is None:
            return None
        left = self._cooldown_until - time.monotonic()
        if left > 0:
            return left
        self.end_cooldown()
        return None

    def end_cooldown(self) -> None:
        if self._cooldown_until is not None:
            self._cooldown_until = None
            self._catalog.set_cooldown(self._name, None)
