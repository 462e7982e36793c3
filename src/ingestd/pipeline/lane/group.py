"""The lanes of one destination: ``transfers`` loops that upload files of its queue at once.

Each slot is a whole Lane (its own claim, cooldown, gate check, lease keeper and cancel), so a
file's life is the same with one slot or eight; the slots share the destination (its client and
its bandwidth limiter) and the node's lane lease, which only the group gives back: a node that
stops one slot (a reload lowered ``transfers``) keeps the destination while the others upload.
Claims come from one queue in its order, and only the node holding the lane lease runs slots, so
several nodes never exceed the destination's ``transfers`` (docs/ARCHITECTURE.md, "The lane").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import Settings
from ingestd.destinations.base import Destination
from ingestd.pipeline.lane.loop import Lane
from ingestd.pipeline.lane.reserved import ReservedKeys
from ingestd.pipeline.worker import stop_all

LaneFactory = Callable[[int, Settings, Destination, ReservedKeys], Lane]


class LaneGroup:
    """The ``transfers`` slots of one destination; what the daemon holds per destination."""

    def __init__(
        self,
        *,
        name: str,
        catalog: Catalog,
        owner: str,
        settings: Settings,
        destination: Destination,
        make_slot: LaneFactory,
    ) -> None:
        """``make_slot(slot, settings, destination, reserved)`` builds slot number ``slot`` (0
        first); it must pass ``slot``, ``reserved`` (the group's keys in flight) and
        ``releases_lease=False`` on to the Lane."""
        self.name = name
        self._catalog = catalog
        self._owner = owner
        self._make_slot = make_slot
        self._settings = settings
        self._destination = destination
        self.slots: list[Lane] = []
        self._reserved = ReservedKeys()  # no two slots write one key (see reserved.py)

    @staticmethod
    def transfers(settings: Settings, name: str) -> int:
        return settings.destinations[name].transfers

    def start(self) -> None:
        self._resize(self.transfers(self._settings, self.name))

    def _resize(self, wanted: int) -> None:
        while len(self.slots) > wanted:
            # The last slot: its upload stops after its parts in flight and its file goes
            # back to the queue, where a remaining slot takes it.
            self.slots.pop().stop(timeout=self._settings.stop_timeout_seconds)
        while len(self.slots) < wanted:
            lane = self._make_slot(
                len(self.slots), self._settings, self._destination, self._reserved
            )
            self.slots.append(lane)
            lane.start()

    def reconfigure(self, *, settings: Settings, destination: Destination) -> None:
        """A new configuration (SIGHUP): every slot takes it between files; a changed
        ``transfers`` adds or stops slots."""
        self._settings, self._destination = settings, destination
        for lane in self.slots:
            lane.reconfigure(settings=settings, destination=destination)
        self._resize(self.transfers(settings, self.name))

    # ----------------------------------------------------------------- what the daemon asks

    @property
    def destination(self) -> Destination:
        return self._destination

    @property
    def draining(self) -> bool:
        return any(lane.draining for lane in self.slots)

    @property
    def down_reason(self) -> str | None:
        return next((lane.down_reason for lane in self.slots if lane.down_reason), None)

    def in_flight(self) -> list[FileRow]:
        """The files being uploaded now, in the order they were claimed."""
        rows = [lane.current for lane in self.slots if lane.current is not None]
        return sorted(rows, key=lambda r: (r.started_at or 0.0, r.id))

    def wake(self) -> None:
        # Every slot: an idle one claims, a busy one only finds its doorbell rung.
        for lane in self.slots:
            lane.wake()

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.slots)

    def stop(self, *, timeout: float) -> None:
        """Stop every slot (uploads stop after their parts in flight), then give the lane
        lease back."""
        stop_all(list(self.slots), timeout=timeout)
        self.release()

    def release(self) -> None:
        """Give the lane lease back (after every slot stopped), so another node may take the
        destination at once."""
        self._catalog.release_lane(self.name, owner=self._owner)
