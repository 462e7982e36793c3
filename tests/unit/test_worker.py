"""The shared worker loop: steps, doorbell, stop, and one guard around every step."""

from __future__ import annotations

import threading
import time

from ingestd.pipeline.worker import Worker, stop_all


class Counter(Worker):
    def __init__(self, *, pause: float | None, fail_first: bool = False) -> None:
        super().__init__(name="counter")
        self.pause = pause
        self.fail_first = fail_first
        self.steps = 0
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.stepped = threading.Event()

    def on_start(self) -> None:
        self.started.set()

    def on_stop(self) -> None:
        self.stopped.set()

    def step(self) -> float | None:
        self.steps += 1
        self.stepped.set()
        if self.fail_first and self.steps == 1:
            raise RuntimeError("boom")
        return self.pause


def until(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.005)
    return False


def test_a_worker_sleeps_until_woken_and_ends_on_stop() -> None:
    worker = Counter(pause=None)
    worker.start()
    assert worker.started.wait(5)
    assert until(lambda: worker.steps == 1)
    time.sleep(0.05)
    assert worker.steps == 1  # None means: until woken
    worker.wake()
    assert until(lambda: worker.steps == 2)
    worker.stop(timeout=5)
    assert worker.stopped.is_set()
    assert not worker.alive


def test_an_error_in_a_step_is_logged_and_the_loop_goes_on(caplog: object) -> None:
    worker = Counter(pause=0.0, fail_first=True)
    worker.start()
    assert until(lambda: worker.steps >= 2)
    worker.stop(timeout=5)
    assert not worker.alive
    assert "unexpected error" in getattr(caplog, "text", "")


def test_stall_is_measured_from_the_last_step() -> None:
    worker = Counter(pause=None)
    worker.start()
    assert until(lambda: worker.steps == 1)
    assert worker.stalled_for(worker.last_loop_at + 7.0) == 7.0
    worker.stop(timeout=5)


def test_stop_all_asks_every_worker_before_joining() -> None:
    workers = [Counter(pause=None) for _ in range(3)]
    for worker in workers:
        worker.start()
    assert until(lambda: all(w.steps == 1 for w in workers))
    stop_all(list(workers), timeout=5)
    assert all(w.stopped.is_set() and not w.alive for w in workers)
