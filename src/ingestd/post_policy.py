"""Which post-action a file in a terminal state gets (pure functions of the configuration).

The post-action stage (pipeline/post/) performs them; intake and the lanes only ask
``keeps_source`` so that a file with nothing to do after its outcome is marked done in the
outcome's own transaction (docs/ARCHITECTURE.md). It lives apart from the stage so that no
stage imports another.
"""

from __future__ import annotations

from ingestd.config import InboxConfig
from ingestd.states import FileState


def action_for_state(state: FileState, inbox: InboxConfig) -> str:
    """The configured post-action for a terminal ``state`` in ``inbox``:
    ``keep``, ``delete``, ``archive`` or ``quarantine``."""
    if state == FileState.UPLOADED:
        return inbox.on_success
    if state == FileState.DUPLICATE:
        return inbox.on_duplicate
    if state == FileState.REJECTED:
        return inbox.on_reject
    return "keep"


def keeps_source(inbox: InboxConfig, state: FileState) -> bool:
    """True when a file of ``inbox`` ending in ``state`` has no post-action at all: a local
    inbox that keeps the source and uses no marker files (an SFTP inbox always has work
    left: its staged copy goes, and the remote side is told)."""
    return (
        inbox.type == "local"
        and not inbox.marker_suffix
        and action_for_state(state, inbox) == "keep"
    )
