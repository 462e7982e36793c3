"""No output holds a secret (issue 21, item 3): a unique secret is planted in every
secret-bearing setting (the catalog URL's password, S3 keys, the AWS session token, the S3
destination's SSE-C key, SFTP password and key passphrase, gate and webhook URLs with tokens
and basic auth, the webhook signing secret, the bearer token of /status and the dashboard), and
every output is searched for each: ``config check`` (text and JSON), ``doctor``, ``status``
(text and JSON), /status, /metrics, /readyz, the dashboard's pages, the log of a short daemon
run that fails to upload, to reach its gate, its SFTP server and its webhook receiver, and
webhook failure text."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ingestd.webhooks import deliver
from tests import samples
from tests.servers.s3 import S3Server
from tests.waiting import until

pytestmark = pytest.mark.e2e
INGESTD = [sys.executable, "-m", "ingestd"]

SECRETS = {
    "catalog password": "PLANTEDpg7731",
    "s3 access key id": "PLANTEDak4415",
    "s3 secret key": "PLANTEDsk9902",
    "aws session token": "PLANTEDst3318",
    "sftp password": "PLANTEDsftppw5521",
    "sftp key passphrase": "PLANTEDsftppp6630",
    "gate basic auth": "PLANTEDgatepw1184",
    "gate token": "PLANTEDgatetok2293",
    "webhook basic auth": "PLANTEDhookpw8841",
    "webhook path token": "PLANTEDhookpath7712",
    "webhook query token": "PLANTEDhookq6603",
    "webhook secret": "PLANTEDhooksecret5547",
    "http token": "PLANTEDhttptok4470",
    # An SSE-C key in its base64 form (as the credential holds it and as botocore sends it)...
    "sse-c key": "PLANTEDsseckey" + "A" * 29 + "=",
}
# ... and in hex, the other form it may be written in.
SECRETS["sse-c key (hex)"] = base64.b64decode(SECRETS["sse-c key"]).hex()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_str(value: object) -> str:
    return json.dumps(str(value))


def write_config(tmp_path: Path, *, catalog_url: str, s3: S3Server, http_port: int) -> Path:
    s = SECRETS
    for folder in ("drop", "gated", "store"):
        (tmp_path / folder).mkdir()
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "id_test").write_text("not a key\n")
    nowhere = closed_port()
    gate = f"http://gate:{s['gate basic auth']}@127.0.0.1:{nowhere}/ready?token={s['gate token']}"
    hook = (
        f"http://hook:{s['webhook basic auth']}@127.0.0.1:{nowhere}/hooks/"
        f"{s['webhook path token']}?token={s['webhook query token']}"
    )
    text = f"""
state_dir = {toml_str(tmp_path / "state")}
catalog_url = {toml_str(catalog_url)}
http_listen = "127.0.0.1:{http_port}"
http_token_env = "INGESTD_TEST_HTTP_TOKEN"
batch_idle_seconds = 1

[queue]
cooldown_seconds = 0
backoff_base_seconds = 0.5
max_attempts = 2

[webhooks]
url = {toml_str(hook)}
secret = {toml_str(s["webhook secret"])}
timeout_seconds = 2

[destinations.main]
type = "s3"
bucket = {toml_str(s3.bucket)}
endpoint_url = {toml_str(s3.endpoint_url)}
addressing_style = "path"
access_key_id = {toml_str(s["s3 access key id"])}
secret_access_key = {toml_str(s["s3 secret key"])}
sse_customer_key_env = "INGESTD_TEST_SSE_C_KEY"
connect_timeout_seconds = 2
read_timeout_seconds = 5

[destinations.gated]
type = "directory"
path = {toml_str(tmp_path / "store")}
ready_url = {toml_str(gate)}
gate_timeout_seconds = 2
gate_poll_seconds = 1

[[inboxes]]
name = "drop"
path = {toml_str(tmp_path / "drop")}
destination = "main"
settle_seconds = 0.2

[[inboxes]]
name = "gated"
path = {toml_str(tmp_path / "gated")}
destination = "gated"
settle_seconds = 0.2

[[inboxes]]
name = "remote"
type = "sftp"
host = "127.0.0.1"
port = {nowhere}
username = "ingest"
private_key = {toml_str(tmp_path / "id_test")}
passphrase_env = "INGESTD_TEST_SFTP_PASSPHRASE"
password_env = "INGESTD_TEST_SFTP_PASSWORD"
known_hosts = {toml_str(tmp_path / "known_hosts")}
poll_seconds = 1
connect_timeout_seconds = 2
destination = "gated"
"""
    path = tmp_path / "ingestd.toml"
    path.write_text(text)
    return path


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGESTD_", "AWS_"))}
    env.update(
        INGESTD_TEST_SFTP_PASSWORD=SECRETS["sftp password"],
        INGESTD_TEST_SFTP_PASSPHRASE=SECRETS["sftp key passphrase"],
        AWS_SESSION_TOKEN=SECRETS["aws session token"],
        INGESTD_TEST_HTTP_TOKEN=SECRETS["http token"],
        INGESTD_TEST_SSE_C_KEY=SECRETS["sse-c key"],
    )
    return env


def ingestd(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*INGESTD, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.stdout + done.stderr


def http_get(port: int, path: str, *, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), str(answer.read().decode())
    except urllib.error.HTTPError as err:  # /readyz answers 503 while a destination is down
        return int(err.code), str(err.read().decode())


def leaks(text: str) -> list[str]:
    return [what for what, secret in SECRETS.items() if secret in text]


def test_no_output_holds_a_planted_secret(tmp_path: Path, pg_url: str, rclone_s3: S3Server) -> None:
    catalog_url = pg_url.replace("@", f":{SECRETS['catalog password']}@", 1)
    assert SECRETS["catalog password"] in catalog_url
    http_port = closed_port()
    config = write_config(tmp_path, catalog_url=catalog_url, s3=rclone_s3, http_port=http_port)
    outputs: dict[str, str] = {
        "config check": ingestd(config, "config", "check"),
        "config check --json": ingestd(config, "config", "check", "--json"),
    }
    assert "PLANTED" not in outputs["config check"]  # nothing of any secret at all
    checked = json.loads(outputs["config check --json"])
    assert checked["destinations"]["main"]["secret_access_key"] == "********"

    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [*INGESTD, "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
    try:
        stage = tmp_path / "stage"
        stage.mkdir()
        good = samples.write_sample("pdf", stage, seed=1)
        os.rename(good, tmp_path / "drop" / good.name)
        gated = samples.write_sample("pdf", stage, seed=2)
        os.rename(gated, tmp_path / "gated" / gated.name)
        (tmp_path / "drop" / "empty.pdf").write_bytes(b"")  # rejected: a file_failed webhook

        def everything_failed_once() -> bool:
            text = log_path.read_text()
            if "webhook file_failed" not in text or "sftp inbox remote" not in text:
                return False
            lanes = json.loads(ingestd(config, "status", "--json"))["destinations"]
            return lanes["main"]["up"] is False and bool(lanes["gated"]["hold"])

        assert until(everything_failed_once, timeout=90), log_path.read_text()[-3000:]
        outputs["status"] = ingestd(config, "status")
        outputs["status --json"] = ingestd(config, "status", "--json")
        pages = ("/", "/problems", "/batches", "/files?state=failed", "/files?state=rejected")
        for page in ("/status", "/metrics", "/readyz", *pages):
            code, outputs[f"http {page}"] = http_get(http_port, page, token=SECRETS["http token"])
            assert code in ((200, 503) if page == "/readyz" else (200,)), page
        # The token protects the data and the dashboard; the probes and the sign-in stay open.
        assert http_get(http_port, "/status")[0] == 401
        assert http_get(http_port, "/metrics", token="wrong")[0] == 401
        assert http_get(http_port, "/healthz")[0] == 200
        assert all(http_get(http_port, page)[0] == 401 for page in pages)
        assert http_get(http_port, "/login")[0] == 200
        assert '"counts"' in outputs["http /status"] and "ingestd_" in outputs["http /metrics"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    outputs["daemon log"] = log_path.read_text()
    outputs["doctor"] = ingestd(config, "doctor")
    hook = json.loads(outputs["config check --json"])["webhooks"]["url"]
    planted_hook = (
        f"ftp://hook:{SECRETS['webhook basic auth']}@127.0.0.1/hooks/"
        f"{SECRETS['webhook path token']}?token={SECRETS['webhook query token']}"
    )
    outputs["webhook failure text"] = "\n".join(
        deliver(url, {"id": "t"}, timeout=2, secret=SECRETS["webhook secret"]).detail
        for url in (planted_hook, planted_hook.replace("ftp:", "http:"))
    )
    assert hook == "http://127.0.0.1:" + hook.split(":")[2].split("/")[0] + "/********"

    # The outputs did look at what holds the secrets (or the search would prove nothing).
    assert "webhook" in outputs["daemon log"], outputs["daemon log"][-3000:]
    assert "ready_url" in outputs["status --json"] and "InvalidAccessKeyId" in outputs["status"]
    assert "webhook file_failed" in outputs["daemon log"]
    assert "catalog" in outputs["doctor"] and "destination main" in outputs["doctor"]
    found = {name: leaks(text) for name, text in outputs.items()}
    assert found == {name: [] for name in outputs}, {k: v for k, v in found.items() if v}
