"""``ingestd doctor``: is this host set up to run ingestd? Each check says pass or fail, and
how to fix a failure (docs/ARCHITECTURE.md).

Checks touch the world as little as proves the point: archive/quarantine folders and a
directory destination get a probe file created and deleted, an S3 destination a small probe
object put and deleted under its prefix; inboxes are only looked at (nothing is written into a
folder people drop files into; an SFTP inbox is logged in to and its folder listed); clamd is
sent PING and the webhook target a HEAD (never a notification). Run it as the user the daemon
runs as (``sudo -u ingestd``): permissions are that user's. Nothing here raises; every problem
becomes a failed Check.

One module per area: ``local`` (config, catalog, folders, inotify, clock), ``s3``
(destinations), ``sftp``, ``clamd``, ``webhook``; ``report`` runs them all and renders.
"""

from __future__ import annotations

from ingestd.doctor.clamd import check_antivirus
from ingestd.doctor.local import (
    BUILD_DATE,
    DIR_WALK_CAP,
    INOTIFY,
    PROBE_PREFIX,
    WATCH_SHARE,
    check_catalog,
    check_clock,
    check_config,
    check_inbox,
    check_inotify,
    check_writable,
    count_dirs,
    folder_checks,
)
from ingestd.doctor.report import exit_code, render, run_checks
from ingestd.doctor.result import Check, failed, passed
from ingestd.doctor.s3 import (
    MAX_SKEW_SECONDS,
    check_destination,
    check_server_clock,
    s3_checks,
    s3_hint,
)
from ingestd.doctor.sftp import check_sftp_inbox
from ingestd.doctor.webhook import check_webhook

__all__ = [
    "BUILD_DATE",
    "DIR_WALK_CAP",
    "INOTIFY",
    "MAX_SKEW_SECONDS",
    "PROBE_PREFIX",
    "WATCH_SHARE",
    "Check",
    "check_antivirus",
    "check_catalog",
    "check_clock",
    "check_config",
    "check_destination",
    "check_inbox",
    "check_inotify",
    "check_server_clock",
    "check_sftp_inbox",
    "check_webhook",
    "check_writable",
    "count_dirs",
    "exit_code",
    "failed",
    "folder_checks",
    "passed",
    "render",
    "run_checks",
    "s3_checks",
    "s3_hint",
]
