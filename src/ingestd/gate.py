"""Downstream gate: before a lane starts a file, ask the system behind the bucket if it is ready.

The asking is probes.py's; this module holds the configured gate of one destination and the
rule for how long to wait while it is busy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.probes import ProbeResult, check_command, check_url

# A Retry-After longer than this is not trusted: a typo on the server must not park the lane
# for a day.
MAX_RETRY_AFTER = 3600.0


def busy_wait(result: ProbeResult, *, poll: float) -> float:
    """Seconds to wait before asking a busy gate again: the poll interval, or the server's
    Retry-After when it asks for longer (capped at MAX_RETRY_AFTER) (pure)."""
    if result.retry_after is None:
        return poll
    return max(poll, min(result.retry_after, MAX_RETRY_AFTER))


@dataclass(frozen=True)
class Gate:
    """The configured gate of one destination: a command, a URL, or neither (always ready)."""

    ready_command: tuple[str, ...] = ()
    ready_url: str = ""
    timeout: float = 10.0
    env: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        """True when a command or a URL is configured."""
        return bool(self.ready_command or self.ready_url)

    def check(self) -> ProbeResult:
        """Ask the gate now. With both configured, both must say ready (command first)."""
        if self.ready_command:
            result = check_command(self.ready_command, timeout=self.timeout, env=dict(self.env))
            if not result.ready or not self.ready_url:
                return result
        if self.ready_url:
            return check_url(self.ready_url, timeout=self.timeout)
        return ProbeResult(True, "no gate configured")
