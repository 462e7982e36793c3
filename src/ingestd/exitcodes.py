"""Every exit status ``ingestd`` uses, in one place: the CLI exits with these, the man page
and the README's "Exit codes" table list ``TABLE``, and the systemd unit's
``RestartPreventExitStatus`` names the ones a restart cannot fix.

Usage errors (a wrong option, a missing argument) are click's 2; a configuration the
command line names but that is invalid is ``CONFIG`` (78, sysexits' EX_CONFIG); a catalog that
cannot be reached or read is ``CATALOG_UNAVAILABLE`` (69, EX_UNAVAILABLE). ``status`` exits
``NOT_RUNNING`` (3) when no daemon is alive, as ``systemctl status`` and LSB init scripts do.
Pure: imports nothing.
"""

from __future__ import annotations

OK = 0
FAILED = 1  # the command ran and something it was asked to do failed
USAGE = 2  # click's own code for a bad command line
NOT_RUNNING = 3  # status: no daemon is alive
CATALOG_UNAVAILABLE = 69  # EX_UNAVAILABLE
CONFIG = 78  # EX_CONFIG
INTERRUPTED = 130  # 128 + SIGINT

TABLE: tuple[tuple[int, str, str], ...] = (
    (OK, "ok", "success (status: a daemon is alive)"),
    (
        FAILED,
        "failed",
        "the command ran and failed: a doctor check failed, a file could not be retried or "
        "cancelled, scan --once left a file failed, cleanup could not list a destination, "
        "migrate could not back up the SQLite catalog (nothing was migrated)",
    ),
    (
        USAGE,
        "usage",
        "usage error: an unknown option, a missing argument, a value not allowed, migrate on "
        "PostgreSQL without --yes",
    ),
    (NOT_RUNNING, "not running", "status: no daemon is alive (or none has ever run)"),
    (
        CATALOG_UNAVAILABLE,
        "catalog unavailable",
        "the catalog cannot be reached or read: the database server is down or refuses the "
        "login, the SQLite file is unreadable, or its schema is another ingestd's (newer, for "
        "migrate)",
    ),
    (
        CONFIG,
        "config",
        "configuration error: the configuration file, an INGESTD_ variable or credential",
    ),
    (INTERRUPTED, "interrupted", "interrupted by Ctrl-C (SIGINT)"),
)
