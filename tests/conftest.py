"""Shared fixtures. Real servers are started lazily by the fixtures in tests/servers/."""

from __future__ import annotations

pytest_plugins = [
    "tests.servers.s3",
    "tests.servers.clamd",
    "tests.servers.sshd",
    "tests.servers.postgres",
]
