"""Where files come from: local drop folders (watchdog + rescan) and, later, SFTP inboxes."""

from ingestd.sources.filters import BUILTIN_EXCLUDES, PathFilter, is_candidate
from ingestd.sources.local import Found, LocalSource

__all__ = ["BUILTIN_EXCLUDES", "Found", "LocalSource", "PathFilter", "is_candidate"]
