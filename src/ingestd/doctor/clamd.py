"""The doctor's check of the virus scanner: clamd answers PING with PONG through the client
the intake scans with (docs/ARCHITECTURE.md). No file is scanned."""

from __future__ import annotations

from ingestd.antivirus import AntivirusUnavailable, ClamdScanner
from ingestd.config import Settings
from ingestd.doctor.result import Check, failed, passed


def check_antivirus(settings: Settings) -> Check | None:
    """PING clamd when the antivirus scan is on; None when it is off (nothing to check)."""
    av = settings.antivirus
    if not av.enabled:
        return None
    scanner = ClamdScanner(
        socket_path=av.clamd_socket or None,
        host=av.clamd_host or None,
        port=av.clamd_port if av.clamd_host else None,
        # A PING is answered at once by a running clamd: the scan timeout (a minute) would
        # only make a dead one slow to report.
        timeout=min(av.timeout_seconds, 10.0),
    )
    try:
        scanner.ping()
    except AntivirusUnavailable as exc:
        # Raw text: the table (report.render) and --json escape what a server may have sent.
        return failed("antivirus", str(exc), _hint(settings))
    return passed("antivirus", f"clamd at {scanner.address} answers PING")


def _hint(settings: Settings) -> str:
    av = settings.antivirus
    if av.clamd_socket:
        return (
            f"is clamd running (systemctl status clamav-daemon) with LocalSocket "
            f"{av.clamd_socket}, and may the ingestd user connect to it (its group)? Files wait "
            "in intake until it answers"
        )
    return (
        f"is clamd running with TCPSocket {av.clamd_port} on {av.clamd_host}, reachable from "
        "here (TCPAddr, firewall)? Files wait in intake until it answers"
    )
