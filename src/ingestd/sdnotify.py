"""sd_notify(3) by hand: a datagram to $NOTIFY_SOCKET. A no-op when not run by systemd."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING to systemd; silent when there is no socket."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if self._address.startswith("@"):  # abstract namespace
            self._address = "\0" + self._address[1:]

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def watchdog_interval(self) -> float | None:
        """Half of WATCHDOG_USEC in seconds when systemd expects pings from this process."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None  # as sd_watchdog_enabled(3): invalid or zero means no watchdog
        return int(usec) / 2_000_000

    def send(self, *lines: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall("\n".join(lines).encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def _one_line(text: str) -> str:
    # A newline would start a new assignment (a file name may hold one: "x\nSTOPPING=1").
    return " ".join(text.splitlines())
