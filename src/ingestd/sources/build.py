"""Build the sources of the configured inboxes: local folders, glob roots, SFTP staging."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ingestd.config import InboxConfig, Settings, archive_dir, quarantine_dir, staging_dir
from ingestd.sources.glob import GlobSource, is_glob
from ingestd.sources.local import LocalSource

if TYPE_CHECKING:
    # paramiko costs 16 MB: loaded only when an SFTP inbox is configured (build_puller).
    from ingestd.sources.sftp import SftpPuller

Source = LocalSource | GlobSource
OnChange = Callable[[str, str], None]


def build_source(settings: Settings, inbox: InboxConfig, on_change: OnChange) -> Source:
    """The source intake reads for one inbox. An SFTP inbox is read from its staging folder,
    where its puller places complete downloads."""
    skip: tuple[Path, ...] = (archive_dir(settings, inbox), quarantine_dir(settings, inbox))
    if inbox.type == "sftp":
        return LocalSource(
            name=inbox.name,
            root=staging_dir(settings, inbox),
            recursive=True,
            include=("*",),
            exclude=(),
            skip_dirs=skip,
            on_change=on_change,
        )
    assert inbox.path is not None  # the config requires it for local inboxes
    # The state directory (catalog, archive, quarantine, staging) is never an inbox's content.
    skip += (settings.state_dir,)
    if is_glob(inbox.path):
        return GlobSource(
            name=inbox.name,
            pattern=str(inbox.path),
            recursive=inbox.recursive,
            include=inbox.include,
            exclude=inbox.exclude,
            skip_dirs=skip,
            on_change=on_change,
            marker_suffix=inbox.marker_suffix,
        )
    return LocalSource(
        name=inbox.name,
        root=inbox.path,
        recursive=inbox.recursive,
        include=inbox.include,
        exclude=inbox.exclude,
        skip_dirs=skip,
        on_change=on_change,
        marker_suffix=inbox.marker_suffix,
    )


def build_sources(settings: Settings, on_change: OnChange) -> dict[str, Source]:
    return {i.name: build_source(settings, i, on_change) for i in settings.inboxes}


def build_puller(settings: Settings, inbox: InboxConfig) -> SftpPuller:
    """The poller of one ``type = "sftp"`` inbox (secrets resolved from env/credentials)."""
    from ingestd.sources.sftp import SftpPuller

    assert inbox.known_hosts is not None  # required by the config for sftp inboxes
    return SftpPuller(
        name=inbox.name,
        host=inbox.host,
        port=inbox.port,
        username=inbox.username,
        private_key=inbox.private_key,
        passphrase=inbox.secret(inbox.passphrase_env),
        password=inbox.secret(inbox.password_env),
        known_hosts=inbox.known_hosts,
        remote_path=inbox.remote_path,
        recursive=inbox.recursive,
        include=inbox.include,
        exclude=inbox.exclude,
        poll_seconds=inbox.poll_seconds,
        settle_seconds=inbox.settle_seconds,
        staging_dir=staging_dir(settings, inbox),
        archive_path=inbox.archive_path,
        rejected_path=inbox.rejected_path,
        connect_timeout=inbox.connect_timeout_seconds,
        op_timeout=inbox.op_timeout_seconds,
    )


def build_pullers(settings: Settings) -> dict[str, SftpPuller]:
    return {i.name: build_puller(settings, i) for i in settings.inboxes if i.type == "sftp"}
