"""One thread skeleton for every long-running loop of the daemon.

A worker is a loop of ``step()`` calls. Each step does one bounded piece of work and says how
long the loop may sleep before the next one; ``wake()`` (the doorbell) ends that sleep early,
``stop()`` ends the loop. One guard around every step logs an unexpected error and carries on,
so one bad file or one bug never ends a thread. Because every loop has the same shape, the
daemon's health check, its watchdog and its shutdown are one loop over a list of workers.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("ingestd.worker")

# After an unexpected error the loop waits this long, so a bug that fails every step costs a
# log line a second, not a core.
ERROR_PAUSE_SECONDS = 1.0


class Worker:
    """A named loop on its own thread: ``step`` until stopped, sleeping as each step asks."""

    def __init__(self, *, name: str, thread_name: str | None = None) -> None:
        self.name = name
        self.thread_name = thread_name or name  # also what the loop's error log names
        self.last_loop_at = time.monotonic()
        self._stopping = threading.Event()
        self._doorbell = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- what a stage writes

    def step(self) -> float | None:
        """Do one bounded piece of work; return the seconds the loop may sleep (None: until
        woken). Exceptions are logged by the loop, which then goes on."""
        raise NotImplementedError

    def on_start(self) -> None:
        """Runs on the worker's thread before the first step."""

    def on_stop(self) -> None:
        """Runs on the worker's thread after the last step (release what the loop held)."""

    def wait(self, seconds: float | None) -> None:
        """Sleep until ``seconds`` passed, ``wake()`` or ``stop()``; a stage with other things
        to wait on (an eventfd, a commit signal) overrides this."""
        self._doorbell.wait(seconds)
        self._doorbell.clear()

    # ----------------------------------------------------------------- what the daemon calls

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Ring the doorbell: the next step runs now. Cheap and safe from any thread."""
        self._doorbell.set()

    def request_stop(self) -> None:
        """Ask the loop to end after its current step, without waiting for it."""
        self._stopping.set()
        self.wake()

    def stop(self, *, timeout: float) -> None:
        """Ask the loop to end and wait up to ``timeout`` seconds for its thread."""
        self.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds since the loop last began a step (the watchdog's measure)."""
        return (time.monotonic() if now is None else now) - self.last_loop_at

    # ----------------------------------------------------------------- the loop

    def _run(self) -> None:
        try:
            self.on_start()
            while not self._stopping.is_set():
                self.last_loop_at = time.monotonic()
                try:
                    pause = self.step()
                except Exception:
                    log.exception("%s: unexpected error; continuing", self.thread_name)
                    pause = ERROR_PAUSE_SECONDS
                if self._stopping.is_set():
                    break
                if pause is None or pause > 0:
                    self.wait(pause)
        finally:
            try:
                self.on_stop()
            except Exception:
                log.exception("%s: error while stopping", self.thread_name)


def stop_all(workers: list[Worker], *, timeout: float) -> None:
    """Stop several workers within one shared deadline: all are asked first, then joined."""
    for worker in workers:
        worker.request_stop()
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.stop(timeout=max(0.0, deadline - time.monotonic()))
