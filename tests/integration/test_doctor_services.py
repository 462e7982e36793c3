"""The doctor's checks of the services around the pipeline, against real servers: OpenSSH's
sshd (login and host key), clamd (PING) and a local HTTP(S) server standing in for the webhook
receiver (which must never get a POST from the doctor)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.config import load_settings
from ingestd.doctor import check_antivirus, check_sftp_inbox, check_webhook, run_checks
from tests.servers.sshd import SshdServer, keygen

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def sftp_config(tmp_path: Path, server: SshdServer, **over: Any) -> Path:
    """A config with one SFTP inbox on ``server`` (its good key and known_hosts unless
    ``over`` says otherwise) and a directory destination; ``extra`` adds top-level tables."""
    (tmp_path / "store").mkdir(exist_ok=True)
    extra = over.pop("extra", "")
    inbox: dict[str, Any] = {
        "name": "partner",
        "type": "sftp",
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key": str(server.private_key),
        "known_hosts": str(server.known_hosts),
        "remote_path": "/inbox",
        "destination": "main",
        "connect_timeout_seconds": 5.0,
        **over,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in inbox.items()]
    text = (
        f'state_dir = "{tmp_path / "state"}"\n{extra}\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        "[[inboxes]]\n" + "\n".join(lines) + "\n"
    )
    path = tmp_path / "ingestd.toml"
    path.write_text(text)
    return path


def host_fingerprint(server: SshdServer) -> str:
    pub = server.etc / "host_ed25519.pub"
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


# ---------------------------------------------------------------- sftp


def test_sftp_good_key_logs_in_and_names_the_host_key(
    tmp_path: Path, sshd_server: SshdServer
) -> None:
    settings = load_settings(sftp_config(tmp_path, sshd_server))
    check = check_sftp_inbox(settings.inboxes[0])
    assert check.ok, check
    assert "logged in" in check.detail and host_fingerprint(sshd_server) in check.detail


def test_sftp_wrong_known_hosts_fails_with_the_servers_fingerprint(
    tmp_path: Path, sshd_server: SshdServer
) -> None:
    other = keygen(tmp_path / "other_host", "not-the-server")
    pub = other.with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd_server.host}]:{sshd_server.port} {pub[0]} {pub[1]}\n")
    settings = load_settings(sftp_config(tmp_path, sshd_server, known_hosts=str(known)))
    check = check_sftp_inbox(settings.inboxes[0])
    assert not check.ok
    assert "CHANGED" in check.detail and host_fingerprint(sshd_server) in check.detail
    assert "ssh-keygen -R" in check.hint and "operator" in check.hint


def test_sftp_host_missing_from_known_hosts_is_refused(
    tmp_path: Path, sshd_server: SshdServer
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    settings = load_settings(sftp_config(tmp_path, sshd_server, known_hosts=str(known)))
    check = check_sftp_inbox(settings.inboxes[0])
    assert not check.ok and "is not in" in check.detail
    assert host_fingerprint(sshd_server) in check.detail
    assert "add it: ssh-keyscan" in check.hint and "ssh-keygen -R" not in check.hint


def test_sftp_key_not_authorized_is_a_login_failure(
    tmp_path: Path, sshd_server: SshdServer
) -> None:
    stranger = keygen(tmp_path / "stranger", "stranger")
    settings = load_settings(sftp_config(tmp_path, sshd_server, private_key=str(stranger)))
    check = check_sftp_inbox(settings.inboxes[0])
    assert not check.ok and "refused" in check.detail
    assert "authorized_keys" in check.hint


def test_sftp_missing_remote_folder_fails_after_login(
    tmp_path: Path, sshd_server: SshdServer
) -> None:
    settings = load_settings(sftp_config(tmp_path, sshd_server, remote_path="/nowhere"))
    check = check_sftp_inbox(settings.inboxes[0])
    assert not check.ok and "logged in" in check.detail and "/nowhere" in check.detail


def test_sftp_nothing_listening_is_unreachable(tmp_path: Path, sshd_server: SshdServer) -> None:
    from tests.servers.s3 import free_port

    settings = load_settings(sftp_config(tmp_path, sshd_server, port=free_port()))
    check = check_sftp_inbox(settings.inboxes[0])
    assert not check.ok and "cannot reach" in check.detail and "firewall" in check.hint


# ---------------------------------------------------------------- clamd


def test_clamd_ping_passes(tmp_path: Path, sshd_server: SshdServer, clamd_socket: str) -> None:
    extra = f'[antivirus]\nclamd_socket = "{clamd_socket}"\n'
    settings = load_settings(sftp_config(tmp_path, sshd_server, extra=extra))
    check = check_antivirus(settings)
    assert check is not None and check.ok, check
    assert clamd_socket in check.detail


def test_clamd_not_running_fails_with_hint(tmp_path: Path, sshd_server: SshdServer) -> None:
    extra = f'[antivirus]\nclamd_socket = "{tmp_path / "no-clamd.sock"}"\n'
    settings = load_settings(sftp_config(tmp_path, sshd_server, extra=extra))
    check = check_antivirus(settings)
    assert check is not None and not check.ok
    assert "not available" in check.detail and "clamav-daemon" in check.hint


def test_no_antivirus_no_webhook_no_checks(tmp_path: Path, sshd_server: SshdServer) -> None:
    settings = load_settings(sftp_config(tmp_path, sshd_server))
    assert check_antivirus(settings) is None and check_webhook(settings) is None


# ---------------------------------------------------------------- webhook


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver that takes POSTs only (HEAD: 405), counting every request."""

    def __init__(self, status: int = 405, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.status = status
        self.requests: list[str] = []
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.server.requests.append("HEAD")
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.server.requests.append("POST")
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(status=getattr(request, "param", 405))
    yield server
    server.stop()


def hook_config(tmp_path: Path, server: SshdServer, url: str) -> Path:
    extra = f'[webhooks]\nurl = "{url}"\ntimeout_seconds = 5.0\n'
    return sftp_config(tmp_path, server, extra=extra)


TOKEN_PATH = "/services/T000/B000/s3cr3tT0kenInThePath"


def test_webhook_head_passes_and_posts_nothing(
    tmp_path: Path, sshd_server: SshdServer, receiver: Receiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}{TOKEN_PATH}"
    settings = load_settings(hook_config(tmp_path, sshd_server, url))
    check = check_webhook(settings)
    assert check is not None and check.ok, check
    assert "HTTP 405" in check.detail and "no notification sent" in check.detail
    assert "s3cr3t" not in check.detail  # the path is the credential: masked
    assert receiver.requests == ["HEAD"]


@pytest.mark.parametrize(
    ("receiver", "hint"), [(503, "retried"), (302, "redirect")], indirect=["receiver"]
)
def test_webhook_server_error_or_redirect_fails(
    tmp_path: Path, sshd_server: SshdServer, receiver: Receiver, hint: str
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    check = check_webhook(load_settings(hook_config(tmp_path, sshd_server, url)))
    assert check is not None and not check.ok and hint in check.hint, check
    assert receiver.requests == ["HEAD"]


def test_webhook_nothing_listening_fails(tmp_path: Path, sshd_server: SshdServer) -> None:
    from tests.servers.s3 import free_port

    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    check = check_webhook(load_settings(hook_config(tmp_path, sshd_server, url)))
    assert check is not None and not check.ok
    assert "connection refused" in check.detail and "s3cr3t" not in check.detail + check.hint


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (no CA trusts it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def test_webhook_tls_that_does_not_verify_fails(tmp_path: Path, sshd_server: SshdServer) -> None:
    server = Receiver(tls=self_signed(tmp_path))
    try:
        url = f"https://127.0.0.1:{server.port}{TOKEN_PATH}"
        check = check_webhook(load_settings(hook_config(tmp_path, sshd_server, url)))
    finally:
        server.stop()
    assert check is not None and not check.ok
    assert "certificate" in check.hint and "s3cr3t" not in check.detail
    assert "POST" not in server.requests


# ---------------------------------------------------------------- all of it, as the CLI says


def test_doctor_json_has_the_service_checks(
    tmp_path: Path, sshd_server: SshdServer, clamd_socket: str, receiver: Receiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}{TOKEN_PATH}"
    extra = (
        f'[antivirus]\nclamd_socket = "{clamd_socket}"\n'
        f'[webhooks]\nurl = "{url}"\ntimeout_seconds = 5.0\n'
    )
    config = sftp_config(tmp_path, sshd_server, extra=extra)
    names = [c.name for c in run_checks(config)]
    assert {"inbox partner", "antivirus", "webhook"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-m", "ingestd", "doctor", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["inbox partner"]["ok"] and checks["antivirus"]["ok"], checks
    assert checks["webhook"]["ok"] and "s3cr3t" not in result.stdout
    assert receiver.requests.count("POST") == 0
