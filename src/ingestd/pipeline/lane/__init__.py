"""The upload lanes, ``transfers`` per destination (group): loop (when to claim, lease,
reclaim, orphans), upload (one file), outcome (what its end means, applied through the
catalog), hold (why it waits), lease (the keeper beside an upload), journal (the upload's
resumable record). Post-actions are their own stage (pipeline/post/). See
docs/ARCHITECTURE.md."""

from ingestd.pipeline.lane.group import LaneGroup
from ingestd.pipeline.lane.loop import Lane

__all__ = ["Lane", "LaneGroup"]
