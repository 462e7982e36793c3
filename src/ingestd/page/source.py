"""Where the dashboard's views read from: the catalog the daemon opened, and its settings.

The daemon hands one ``PageSource`` to the HTTP server (``Served.page_source``); tools that
render the pages without a daemon (tests, scripts/screenshots) build one on a catalog file.
Views read through ``reader()`` (the fast DBAPI reader ``status`` uses) and, for the views
that are the CLI's own (``show``, ``report --batch``), through ``engine``; the actions write
through ``catalog``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingestd.catalog.reader import Reader, open_reader
from ingestd.config import Settings

if TYPE_CHECKING:
    from ingestd.catalog.repo import Catalog


@dataclass(frozen=True)
class PageSource:
    """The catalog (its SQLAlchemy engine, and a URL for fresh readers) and the settings."""

    engine: Any  # sqlalchemy.Engine; typed loosely so this module does not import SQLAlchemy
    settings: Settings
    clock: Callable[[], float] = field(default=time.time)
    # The catalog the actions write through (page/actions.py); None: none can be offered.
    catalog: Catalog | None = None

    def reader(self) -> Reader:
        """A new read-only connection (the caller closes it: ``with source.reader() as r``)."""
        return open_reader(self.engine.url.render_as_string(hide_password=False))

    def now(self) -> float:
        return self.clock()
