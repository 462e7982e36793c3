"""sd_notify against a real bound NOTIFY_SOCKET (AF_UNIX datagram socket), as systemd binds it."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.sdnotify import Notifier


class NotifySocket:
    """A bound datagram socket playing systemd's part."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def receive(self) -> str:
        return self.sock.recv(65536).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    folder = tempfile.mkdtemp(prefix="sdnotify-", dir="/tmp")
    listener = NotifySocket(os.path.join(folder, "notify"))
    try:
        yield listener
    finally:
        listener.sock.close()
        shutil.rmtree(folder)


def test_messages_arrive_as_systemd_expects(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.address)
    assert notifier.enabled
    assert notifier.ready("3 queued, 10 uploaded")
    assert notify_socket.receive() == "READY=1\nSTATUS=3 queued, 10 uploaded"
    assert notifier.ready()
    assert notify_socket.receive() == "READY=1"
    assert notifier.watchdog()
    assert notify_socket.receive() == "WATCHDOG=1"
    assert notifier.status("uploading a.pdf")
    assert notify_socket.receive() == "STATUS=uploading a.pdf"
    assert notifier.reloading()
    assert notify_socket.receive() == "RELOADING=1"
    assert notifier.stopping()
    assert notify_socket.receive() == "STOPPING=1"


def test_address_comes_from_the_environment(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    assert Notifier().ready()
    assert notify_socket.receive() == "READY=1"


def test_abstract_namespace_address() -> None:
    name = f"ingestd-test-{os.getpid()}-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        assert Notifier("@" + name).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_systemd_everything_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.stopping()


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.enabled
    assert notifier.watchdog() is False


def test_concurrent_senders_never_mix_datagrams(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.address)
    received: list[str] = []
    reader = threading.Thread(
        target=lambda: received.extend(notify_socket.receive() for _ in range(200))
    )
    reader.start()

    def send(worker: int) -> None:
        for i in range(50):
            assert notifier.status(f"worker {worker} message {i}")

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    reader.join(10)
    expected = {f"STATUS=worker {w} message {i}" for w in range(4) for i in range(50)}
    assert sorted(received) == sorted(expected)


# ------------------------------------------------------------------------- watchdog interval


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier("").watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier("").watchdog_interval() == 30.0


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("").watchdog_interval() is None


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert Notifier("").watchdog_interval() is None


# ------------------------------------------------------------------------- hostile input


def test_status_text_cannot_inject_assignments(notify_socket: NotifySocket) -> None:
    """A file name may hold a newline; it must not become a second assignment."""
    notifier = Notifier(notify_socket.address)
    notifier.status("uploading evil\nSTOPPING=1.pdf")
    assert notify_socket.receive() == "STATUS=uploading evil STOPPING=1.pdf"
    notifier.ready("1 queued\nREADY=0")
    assert notify_socket.receive() == "READY=1\nSTATUS=1 queued READY=0"


@pytest.mark.parametrize("value", ["sixty seconds", "0", "-5", ""])
def test_unusable_watchdog_usec_disables_the_watchdog(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As sd_watchdog_enabled(3): malformed or zero means no watchdog, never a crash."""
    monkeypatch.setenv("WATCHDOG_USEC", value)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier("").watchdog_interval() is None
