"""Keys being written now by a destination's lanes, so two of its ``transfers`` never choose
the same key.

A HEAD before the PUT only says a key is free on the server; with several files in flight, two
with the same name could both see it free and the second PUT would overwrite the first. Each
lane reserves the key it is about to write here (in memory: only the node holding the lane
lease uploads to the destination) and treats a key another file holds as taken, exactly as if
the object were already there. The key itself is recorded in the catalog before the write, as
always; after a crash the in-flight rows' keys are distinct, because they were reserved when
they were chosen (docs/ARCHITECTURE.md, "The lane").
"""

from __future__ import annotations

import threading


class ReservedKeys:
    """Which file holds which key while it is written; shared by one destination's lanes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: dict[str, int] = {}

    def reserve(self, key: str, file_id: int) -> bool:
        """Hold ``key`` for ``file_id``; False when another file holds it."""
        with self._lock:
            holder = self._holder.setdefault(key, file_id)
            return holder == file_id

    def release(self, file_id: int) -> None:
        """Give back every key ``file_id`` held (its upload ended, whatever its outcome)."""
        with self._lock:
            for key in [k for k, holder in self._holder.items() if holder == file_id]:
                del self._holder[key]

    def held_by_other(self, key: str, file_id: int) -> bool:
        with self._lock:
            return self._holder.get(key, file_id) != file_id
