"""A real PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` into a temp dir on a free port.

``PostgresServer`` runs Debian's binaries (``/usr/lib/postgresql/<version>/bin``, the newest
one; else ``pg_ctl`` found on PATH) as the ``postgres`` user when the tests run as root (initdb
refuses root), as the current user otherwise. The cluster lives under /var/tmp (the postgres user
must be able to traverse its path; pytest's 0700 temp dirs are not), listens on 127.0.0.1 with
trust authentication, keeps its unix socket beside the data and runs with ``fsync=off``.

Session fixture ``pg_server`` starts one server for the whole run and stops it at the end;
function fixture ``pg_url`` creates a fresh database per test and yields
``postgresql://postgres@127.0.0.1:PORT/DB``. List ``tests.servers.postgres`` in a conftest's
``pytest_plugins`` or import both fixtures into a test module. Without PostgreSQL installed the
fixtures skip, unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import sql

from tests.servers.s3 import free_port

SUPERUSER = "postgres"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "pg_ctl", "postgres")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name)) or (0,)


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (Debian's newest first), or None."""
    candidates = sorted(_DEBIAN_ROOT.glob("*/bin"), key=lambda p: _version_key(p.parent))
    for bindir in reversed(candidates):
        if all((bindir / tool).exists() for tool in _TOOLS):
            return bindir
    found = shutil.which("pg_ctl")
    if found:
        # /usr/local/bin/pg_ctl may be a symlink into a Debian tree: use the real directory.
        bindir = Path(found).resolve().parent
        if all((bindir / tool).exists() for tool in _TOOLS):
            return bindir
    return None


def require_bindir() -> Path:
    """PostgreSQL's bin dir; skips the test when missing, fails instead under ``CI=true``."""
    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def _as_server_user() -> list[str]:
    """argv prefix that runs a command as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", SUPERUSER, "--"]
    return ["setpriv", f"--reuid={SUPERUSER}", f"--regid={SUPERUSER}", "--init-groups", "--"]


class PostgresServer:
    """One PostgreSQL cluster in a private temp dir, on ``port`` at 127.0.0.1."""

    def __init__(self, *, port: int | None = None) -> None:
        self.bindir = require_bindir()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="ingestd-pg-", dir="/var/tmp"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "postgres.log"
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> None:
        """initdb, start, and return once the server accepts connections."""
        if os.geteuid() == 0:
            shutil.chown(self.root, SUPERUSER, SUPERUSER)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = " ".join(
            [
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                f"-c listen_addresses={self.host}",
                "-c max_connections=200",
                f"-p {self.port}",
                f"-k {self.socket_dir}",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
        )
        self._started = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections:\n{self.logs()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files; safe to call twice."""
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
            except RuntimeError:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        argv = [*_as_server_user(), str(self.bindir / tool), *args]
        # cwd: runuser keeps ours, and postgres must be able to stat it.
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, cwd=self.root, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} exited {result.returncode}:\n{result.stdout}\n{result.stderr}\n"
                f"{self.logs()}"
            )

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"

    # ------------------------------------------------------------------ databases

    def url(self, database: str) -> str:
        """A SQLAlchemy/ingestd catalog URL for ``database`` (trust auth: no password)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URL."""
        db = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        return self.url(db)

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database``, disconnecting its sessions."""
        db = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server running for the whole session (stopped and deleted at the end)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session server: ``postgresql://postgres@HOST:PORT/DB``."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)
