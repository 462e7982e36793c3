"""Shared fixtures. Real servers are started lazily by the fixtures in tests/servers/."""

from __future__ import annotations

pytest_plugins = [
    "tests.servers.s3",
    "tests.servers.clamd",
    "tests.servers.sshd",
    "tests.servers.postgres",
]


def pytest_addoption(parser: object) -> None:
    """``--torture-long``: the long form of tests/torture (also INGESTD_TORTURE=long)."""
    parser.addoption(  # type: ignore[attr-defined]
        "--torture-long",
        action="store_true",
        default=False,
        help="run tests/torture in its long form (e.g. 50 kills during 500 files)",
    )
