"""A real OpenSSH sshd for tests: loopback, its own host key, one chrooted key-only SFTP user.

``SshdServer`` runs ``/usr/sbin/sshd -D -e -f CONFIG`` on 127.0.0.1 and a free port. Everything it
needs lives in a fresh folder under /srv (a chroot may not live under /tmp, and every folder above
it must be root-owned and not group/world-writable): the config, an ed25519 host key, the user's
key pair, ``authorized_keys`` (read by sshd as the user, so it must not sit in a 0700 temp dir;
``StrictModes no`` lets sshd accept it there) and the chroot with a user-owned ``inbox`` folder.
The system user ``ingestd-sftp-test`` is created with ``useradd`` when missing (password ``*``:
no password login, but not "locked", which sshd refuses without PAM). The folder is removed at
the end; the user stays (creating it again each session would only churn /etc/passwd).

The session fixture ``sshd_server`` yields a running ``SshdServer``. To use it, import it into a
test module (``from tests.servers.sshd import sshd_server  # noqa: F401``) or list
``tests.servers.sshd`` in a conftest's ``pytest_plugins``. Without sshd, or without root (chroot
and useradd need it), the fixture skips, unless ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.s3 import free_port, wait_for_port

SSHD = Path("/usr/sbin/sshd")
USERNAME = "ingestd-sftp-test"


def require_sshd() -> Path:
    """sshd's path; skips when sshd is missing or we are not root, fails instead under CI=true."""
    problem = None
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        problem = "OpenSSH is not installed (apt-get install openssh-server openssh-client)"
    elif os.geteuid() != 0:
        problem = "the sshd fixture needs root (chroot, useradd)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return SSHD


def ensure_user(name: str = USERNAME) -> pwd.struct_passwd:
    """The system user ``name``, created (no home, no shell, password ``*``) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--password",
                "*",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def keygen(path: Path, comment: str) -> Path:
    """A fresh ed25519 key pair at ``path`` (private) and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (sshd forks one per connection, plus a privsep child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


class SshdServer:
    """One sshd with a chrooted SFTP user whose writable folder is ``inbox`` (``/inbox`` inside
    the chroot). Attributes: host, port, username, private_key, known_hosts, host_key_pub,
    chroot, inbox, log."""

    def __init__(self) -> None:
        self.binary = require_sshd()
        self.user = ensure_user()
        self.username = self.user.pw_name
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="ingestd-sshd-", dir="/srv"))
        os.chmod(self.base, 0o755)  # noqa: S103  # sshd (as the user) reads authorized_keys here
        self.etc = self.base / "etc"
        self.chroot = self.base / "chroot"
        self.inbox = self.chroot / "inbox"
        self.log = self.base / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        self.etc.mkdir(mode=0o755)
        self.inbox.mkdir(parents=True, mode=0o755)
        os.chmod(self.chroot, 0o755)  # noqa: S103  # ChrootDirectory: root-owned, 0755
        os.chown(self.inbox, self.user.pw_uid, self.user.pw_gid)
        host_key = keygen(self.etc / "host_ed25519", "ingestd-test-host")
        self.host_key_pub = host_key.with_suffix(".pub").read_text().split()
        self.private_key = keygen(self.etc / "client_ed25519", "ingestd-test-client")
        authorized = self.etc / "authorized_keys"
        shutil.copyfile(self.private_key.with_suffix(".pub"), authorized)
        os.chmod(authorized, 0o644)
        self.known_hosts = self.etc / "known_hosts"
        self.known_hosts.write_text(
            f"[{self.host}]:{self.port} {' '.join(self.host_key_pub[:2])}\n"
        )
        self.config = self.etc / "sshd_config"
        self.config.write_text(
            f"ListenAddress {self.host}:{self.port}\n"
            f"HostKey {host_key}\n"
            "PidFile none\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            f"AuthorizedKeysFile {authorized}\n"
            "LogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n"
            f"AllowUsers {self.username}\n"
            f"Match User {self.username}\n"
            f"  ChrootDirectory {self.chroot}\n"
            "  ForceCommand internal-sftp\n"
            "  AllowTcpForwarding no\n"
            "  X11Forwarding no\n"
        )

    def make_dir(self, relpath: str) -> tuple[Path, str]:
        """A folder below the user's inbox, owned by the user: (local path, remote path)."""
        path = self.inbox
        for part in relpath.strip("/").split("/"):
            path = path / part
            path.mkdir(exist_ok=True)
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path, "/inbox/" + relpath.strip("/")

    def start(self, timeout: float = 20.0) -> None:
        """Start sshd and return once it accepts connections."""
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, self.log, timeout)

    def kill_sessions(self) -> int:
        """SIGKILL every session process (cuts every connection; sshd keeps listening).
        Returns how many processes were killed."""
        if self.process is None:
            return 0
        pids = descendants(self.process.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        """The server goes away: sessions are killed and nothing listens any more."""
        if self.process is None:
            return
        self.kill_sessions()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sftp_command(self, batch: Path) -> list[str]:
        """argv of the real OpenSSH ``sftp`` client running ``batch`` against this server."""
        return [
            "sftp",
            "-b",
            str(batch),
            "-i",
            str(self.private_key),
            "-P",
            str(self.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            f"{self.username}@{self.host}",
        ]

    def run_sftp(self, commands: str, workdir: Path, timeout: float = 60) -> str:
        """Run ``commands`` (one per line) with the real sftp client; return its output.
        Raises AssertionError with the client's and the server's output if it fails."""
        batch = workdir / f"batch-{time.monotonic_ns()}.txt"
        batch.write_text(commands)
        result = subprocess.run(
            self.sftp_command(batch), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise AssertionError(
                f"sftp exited {result.returncode}:\n{result.stdout}\n{result.stderr}\n"
                f"--- sshd log ---\n{self.log.read_text(errors='replace')[-3000:]}"
            )
        return result.stdout

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A running sshd for the whole session; tests that stop it must start it again."""
    server = SshdServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
