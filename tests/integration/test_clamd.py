"""ClamdScanner against a real clamd (tests/servers/clamd.py), plus its protocol edges."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.antivirus import AntivirusUnavailable, ClamdScanner, ScanFailed, parse_reply
from ingestd.validate import Verdict, validate_file
from tests import samples
from tests.servers.clamd import EICAR, SIGNATURE_NAME, ClamdServer
from tests.servers.clamd import clamd_socket as clamd_socket  # the session fixture


def _validate(path: Path, scanner: ClamdScanner) -> Verdict:
    return validate_file(
        path,
        name=path.name,
        size=path.stat().st_size,
        min_size_bytes=1,
        max_size_bytes=0,
        allowed_types=frozenset(),
        antivirus=scanner,
    )


# --- against a real clamd -------------------------------------------------------------------


@pytest.mark.integration
def test_ping(clamd_socket: str) -> None:
    ClamdScanner(clamd_socket, timeout=5).ping()


@pytest.mark.integration
def test_eicar_is_found_with_its_signature_name(clamd_socket: str, tmp_path: Path) -> None:
    path = tmp_path / "invoice.txt"
    path.write_bytes(EICAR)
    signature = ClamdScanner(clamd_socket, timeout=10).scan(path)
    assert signature is not None
    assert signature.startswith(SIGNATURE_NAME)


@pytest.mark.integration
def test_clean_files_are_ok(clamd_socket: str, tmp_path: Path) -> None:
    scanner = ClamdScanner(clamd_socket, timeout=10)
    for kind in ("pdf", "docx", "jpeg", "txt"):
        assert scanner.scan(samples.write_sample(kind, tmp_path, seed=1)) is None


@pytest.mark.integration
def test_eicar_split_across_many_small_chunks(clamd_socket: str, tmp_path: Path) -> None:
    path = tmp_path / "split.bin"
    path.write_bytes(b"padding " * 100 + EICAR)
    scanner = ClamdScanner(clamd_socket, timeout=10, chunk_size=7)  # framing every 7 bytes
    assert (scanner.scan(path) or "").startswith(SIGNATURE_NAME)


@pytest.mark.integration
def test_large_file_is_streamed(clamd_socket: str, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    rng = random.Random(20)
    with path.open("wb") as fh:
        for _ in range(20):
            fh.write(rng.randbytes(1024 * 1024))
    scanner = ClamdScanner(clamd_socket, timeout=30)
    assert scanner.scan(path) is None
    with path.open("ab") as fh:  # the signature in the last bytes: the whole stream arrived
        fh.write(EICAR)
    assert (scanner.scan(path) or "").startswith(SIGNATURE_NAME)


@pytest.mark.integration
def test_validate_file_reports_infected(clamd_socket: str, tmp_path: Path) -> None:
    scanner = ClamdScanner(clamd_socket, timeout=10)
    infected = tmp_path / "notes.txt"
    infected.write_bytes(EICAR)
    verdict = _validate(infected, scanner)
    assert verdict.codes == ("infected",)
    assert SIGNATURE_NAME in verdict.rejections[0].message
    assert _validate(samples.write_pdf(tmp_path / "cv.pdf", 4), scanner).ok


@pytest.mark.integration
def test_stopped_clamd_is_unavailable_not_infected(tmp_path: Path) -> None:
    with ClamdServer(tmp_path / "own") as server:
        scanner = ClamdScanner(server.socket_path, timeout=5)
        clean = samples.write_txt(tmp_path / "a.txt", 1)
        assert scanner.scan(clean) is None
    with pytest.raises(AntivirusUnavailable):
        scanner.ping()
    with pytest.raises(AntivirusUnavailable):
        scanner.scan(clean)
    with pytest.raises(AntivirusUnavailable):
        _validate(clean, scanner)


@pytest.mark.integration
def test_file_over_stream_max_length_is_scan_failed(tmp_path: Path) -> None:
    with ClamdServer(tmp_path / "own", stream_max_length="1M") as server:
        path = tmp_path / "big.bin"
        path.write_bytes(random.Random(3).randbytes(3 * 1024 * 1024))
        with pytest.raises(ScanFailed, match="size limit"):
            ClamdScanner(server.socket_path, timeout=10).scan(path)
        ClamdScanner(server.socket_path, timeout=5).ping()  # and clamd is still fine


# --- protocol edges, no clamd needed --------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"stream: OK\x00", None),
        (b"stream: Eicar-Test-Signature FOUND\x00", "Eicar-Test-Signature"),
        (b"stream: Win.Trojan.Agent-1 FOUND\n", "Win.Trojan.Agent-1"),
    ],
)
def test_parse_reply(reply: bytes, expected: str | None) -> None:
    assert parse_reply(reply) == expected


def test_parse_reply_errors() -> None:
    with pytest.raises(ScanFailed):
        parse_reply(b"INSTREAM size limit exceeded. ERROR\x00")
    with pytest.raises(AntivirusUnavailable):
        parse_reply(b"")
    with pytest.raises(AntivirusUnavailable):
        parse_reply(b"something odd\x00")


def test_scanner_needs_one_address() -> None:
    with pytest.raises(ValueError):
        ClamdScanner()
    with pytest.raises(ValueError):
        ClamdScanner("/run/clamd.sock", host="127.0.0.1", port=3310)
    assert ClamdScanner(host="127.0.0.1", port=3310).address == "127.0.0.1:3310"


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AntivirusUnavailable, match="not available"):
        ClamdScanner(str(tmp_path / "none.sock"), timeout=1).ping()


def test_refused_tcp_port_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(AntivirusUnavailable):
            ClamdScanner(host="127.0.0.1", port=port, timeout=1).ping()


@pytest.fixture
def silent_server(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections, reads everything and never answers."""
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while not stop.is_set() and conn.recv(65536):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    server.close()


def test_silent_clamd_times_out_as_unavailable(silent_server: str, tmp_path: Path) -> None:
    path = samples.write_txt(tmp_path / "a.txt", 1)
    with pytest.raises(AntivirusUnavailable, match="timed out"):
        ClamdScanner(silent_server, timeout=0.5).scan(path)
