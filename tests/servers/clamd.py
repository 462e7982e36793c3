"""A real clamd for tests, with a private signature database that detects the EICAR test file.

No signature download is possible here, so ``ClamdServer`` writes its own database: one ``.ndb``
body signature (``Ingestd.Test.EICAR``) matching the EICAR string anywhere in a file. clamd runs
in the foreground on a unix socket in a temp dir, TCP off; ``start()`` returns once it answers
PING with PONG. The session fixture ``clamd_socket`` yields that socket's path. To use it, list
``tests.servers.clamd`` in a conftest's ``pytest_plugins`` or import the fixture into a test
module. Without clamd installed the fixture skips, unless ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
"""The industry-standard harmless test "virus" (68 bytes, plain ASCII)."""
SIGNATURE_NAME = "Ingestd.Test.EICAR"
"""Our signature's name; clamd reports it with ``.UNOFFICIAL`` appended."""
_SEARCH_PATH = ("/usr/sbin/clamd", "/usr/local/sbin/clamd")
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux


def find_clamd() -> Path | None:
    """The clamd binary (often in /usr/sbin, which a non-root PATH may lack), or None."""
    found = shutil.which("clamd")
    if found:
        return Path(found)
    return next((Path(p) for p in _SEARCH_PATH if Path(p).exists()), None)


def require_clamd() -> Path:
    """clamd's path; skips the test when it is missing, fails instead under ``CI=true``."""
    path = find_clamd()
    if path is None:
        message = "clamd is not installed (apt-get install clamav-daemon)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def ping(socket_path: str, timeout: float = 1.0) -> bool:
    """True if a clamd on ``socket_path`` answers PING with PONG (plain socket code, so a bug
    in the scanner under test cannot make the fixture wait forever)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"zPING\x00")
            return sock.recv(16).rstrip(b"\x00") == b"PONG"
    except OSError:
        return False


class ClamdServer:
    """One clamd process with its own config, database, socket and log under ``workdir``.

    ``stream_max_length`` is clamd's INSTREAM size limit (``"64M"`` fits the 20 MB test).
    """

    def __init__(self, workdir: Path, *, stream_max_length: str = "64M") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stream_max_length = stream_max_length
        self.binary = require_clamd()
        self.log = workdir / "clamd.log"
        self._own_socket_dir: Path | None = None
        if len(str(workdir / "clamd.sock")) > _SOCKET_PATH_MAX:
            self._own_socket_dir = Path(tempfile.mkdtemp(prefix="clamd-"))
        self.socket_path = str((self._own_socket_dir or workdir) / "clamd.sock")
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        """Write the signature database and clamd.conf; return the config's path."""
        database = self.workdir / "db"
        database.mkdir(exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        (database / "ingestd-test.ndb").write_text(
            f"{SIGNATURE_NAME}:0:*:{b'EICAR-STANDARD-ANTIVIRUS-TEST-FILE'.hex()}\n"
        )
        config = self.workdir / "clamd.conf"
        config.write_text(
            "Foreground yes\n"
            f"LocalSocket {self.socket_path}\n"
            f"DatabaseDirectory {database}\n"
            f"TemporaryDirectory {self.workdir / 'tmp'}\n"
            f"LogFile {self.log}\n"
            f"StreamMaxLength {self.stream_max_length}\n"
            "SelfCheck 0\n"  # never reload the database behind a test's back
        )
        return config

    def start(self, timeout: float = 60.0) -> None:
        """Start clamd and return once it answers PING; raise with its log if it does not."""
        config = self.write_config()
        with (self.workdir / "clamd.out").open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.process.returncode}:\n{self._logs()}")
            if ping(self.socket_path):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"clamd did not answer PING within {timeout}s:\n{self._logs()}")

    def stop(self) -> None:
        """Stop clamd (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_socket_dir is not None:
            shutil.rmtree(self._own_socket_dir, ignore_errors=True)

    def _logs(self) -> str:
        texts = [p.read_text(errors="replace") for p in (self.workdir / "clamd.out", self.log)]
        return "\n".join(t for t in texts if t)

    def __enter__(self) -> ClamdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def clamd_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The unix socket path of a clamd running for the whole session (stopped at the end)."""
    with ClamdServer(tmp_path_factory.mktemp("clamd")) as server:
        yield server.socket_path
