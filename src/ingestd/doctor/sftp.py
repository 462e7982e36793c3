"""The doctor's check of a remote SFTP inbox: a real login with the configured key or password
against the configured known_hosts (the daemon's own connect()), then the remote folder
(docs/ARCHITECTURE.md).

A TCP connection alone proves little: the daemon fails on a changed host key or a refused key
just the same, only later and in its log. The check reads, never writes.
"""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

import paramiko

from ingestd.config import InboxConfig
from ingestd.doctor.result import Check, failed, passed
from ingestd.sources.sftp_conn import (
    Endpoint,
    HostKeyRejected,
    connect,
    fingerprint,
    host_name,
    list_folder,
)


def endpoint(inbox: InboxConfig) -> Endpoint:
    """The inbox's Endpoint as the daemon builds it (secrets from env or credentials)."""
    assert inbox.known_hosts is not None  # required by the config for sftp inboxes
    return Endpoint(
        host=inbox.host,
        port=inbox.port,
        username=inbox.username,
        known_hosts=Path(inbox.known_hosts),
        private_key=Path(inbox.private_key) if inbox.private_key else None,
        passphrase=inbox.secret(inbox.passphrase_env),
        password=inbox.secret(inbox.password_env),
        connect_timeout=inbox.connect_timeout_seconds,
        op_timeout=inbox.op_timeout_seconds,
    )


def check_sftp_inbox(inbox: InboxConfig) -> Check:
    """Log in to the inbox's server as the daemon does (its host key must match known_hosts)
    and look at the remote folder."""
    name = f"inbox {inbox.name}"
    if inbox.known_hosts is None or not inbox.known_hosts.is_file():
        return failed(
            name,
            f"known_hosts file {inbox.known_hosts} not found",
            f"ssh-keyscan -p {inbox.port} {inbox.host} > {inbox.known_hosts} "
            "(then verify the fingerprint with the server's owner)",
        )
    ep = endpoint(inbox)
    try:
        ssh, sftp = connect(ep)
    except HostKeyRejected as exc:
        return failed(name, str(exc), host_key_hint(ep, changed="CHANGED" in str(exc)))
    except paramiko.AuthenticationException as exc:
        return failed(name, f"login as {ep.describe()} refused: {exc}", _login_hint(inbox))
    except (OSError, paramiko.SSHException, EOFError) as exc:
        return failed(
            name,
            f"cannot reach sftp://{ep.describe()}: {exc or type(exc).__name__}",
            "check host, port and firewall (is sshd running there?); the daemon retries by itself",
        )
    try:
        transport = ssh.get_transport()
        key = transport.get_remote_server_key() if transport is not None else None
        seen = f"host key {key.get_name()} {fingerprint(key)} as in known_hosts" if key else ""
        problem = _folder_problem(sftp, inbox.remote_path)
    finally:
        ssh.close()
    where = f"sftp://{ep.describe()}{inbox.remote_path}"
    if problem is not None:
        return failed(
            name,
            f"logged in ({seen}), but {problem}",
            f"create {inbox.remote_path} on the server for {inbox.username}, or fix its "
            "remote_path (a chrooted user sees paths from its chroot)",
        )
    return passed(name, f"{where}: logged in, {seen}; the folder can be listed")


def _folder_problem(sftp: paramiko.SFTPClient, folder: str) -> str | None:
    try:
        attrs = sftp.stat(folder)
        if attrs.st_mode is None or not stat.S_ISDIR(attrs.st_mode):
            return f"{folder} is not a folder"
        # One read of the listing proves permission; a drop folder may hold 100 000 names.
        # The daemon's own listing: paramiko's would fail on a first name that is not UTF-8.
        with contextlib.closing(list_folder(sftp, folder)) as listing:
            next(listing, None)
    except FileNotFoundError:
        return f"{folder} does not exist"
    except OSError as exc:
        return f"{folder} cannot be listed: {exc.strerror or exc}"
    return None


def host_key_hint(ep: Endpoint, *, changed: bool) -> str:
    """Verify first, then add (unknown host) or replace (changed key) the known_hosts entry.
    Never "accept the new key": a changed key is as likely someone in the middle as a
    reinstalled server."""
    check = (
        "compare the fingerprint above with the one the server's operator gives you "
        "(ssh-keygen -lf on its host key); only then "
    )
    add = f"ssh-keyscan -p {ep.port} {ep.host} >> {ep.known_hosts}"
    if changed:
        forget = f"ssh-keygen -R '{host_name(ep)}' -f {ep.known_hosts}"
        return f"{check}replace the entry: {forget} && {add}"
    return f"{check}add it: {add}"


def _login_hint(inbox: InboxConfig) -> str:
    if inbox.private_key:
        return (
            f"is {inbox.username!r} right, {inbox.private_key} readable by the ingestd user "
            "(passphrase_env set if it is encrypted), and its public key in the server's "
            "authorized_keys for that user?"
        )
    return f"is {inbox.username!r} right and the password in password_env current?"
