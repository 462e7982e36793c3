"""The lane's one call into post-actions (archive, delete or keep the source), run inline
after an upload.

It lives alone here because post-actions are moving to their own stage: then this module and
its calls from outcome.py go, and the lane no longer waits for a (possibly cross-filesystem)
archive copy before its cooldown.
"""

from __future__ import annotations

import logging

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.finisher import Finisher
from ingestd.states import FileState

log = logging.getLogger("ingestd.lane")


class InlinePostAction:
    """What the lane asks the Finisher: is the source kept, and run the post-action now."""

    def __init__(self, finisher: Finisher) -> None:
        self._finisher = finisher

    def keeps_source(self, row: FileRow) -> bool:
        """Nothing to do after the upload (marked done in the upload's own transaction)."""
        return self._finisher.keeps_source(row.inbox, FileState.UPLOADED)

    def run(self, catalog: Catalog, file_id: int) -> None:
        """Archive or delete the uploaded source; a failure is retried by the daemon's
        finish-pending job, so it is logged, not raised."""
        done = catalog.get(file_id)
        if done is None:
            return
        try:
            self._finisher.finish(done)
        except OSError as exc:
            log.error("file %s: post-action failed: %s (will retry)", file_id, exc)
