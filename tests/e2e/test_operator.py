"""The operator surface against a real ``ingestd run``: status, files, report, /status,
/metrics (promtool), control commands and the live page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml, s3_destination_toml
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (scripts/system-deps installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def http_get(daemon: Ingestd, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{daemon.http_port}{path}", timeout=10
        ) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and found == want:
            return float(value)
    return 0.0


def drop(inbox: Path, stage: Path, kind: str, seed: int) -> Path:
    path = samples.write_sample(kind, stage, seed=seed)
    target = inbox / path.name
    os.rename(path, target)
    return target


@pytest.fixture
def scenario(tmp_path: Path, rclone_s3: S3Server) -> Any:
    """A daemon that has processed 10 good, 2 corrupt and 2 duplicate files."""
    bucket = rclone_s3.create_bucket()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    stage.mkdir()
    proxy = TcpProxy(target_port=rclone_s3.port)
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            rclone_s3,
            bucket=bucket,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            part_size_mib=5,
            multipart_threshold_mib=5,
        ),
        inboxes=[inbox_toml("office", inbox, settle_seconds=0.5)],
        queue={"max_attempts": 1},
    )
    with daemon:
        daemon.start()
        staged = [samples.write_sample("pdf", stage, seed=10 + i) for i in range(10)]
        staged += [shutil.copyfile(staged[i], stage / f"copy{i}.pdf") for i in range(2)]
        for path in staged:
            os.rename(path, inbox / path.name)
        drop(inbox, stage, "pdf_truncated", 50)
        drop(inbox, stage, "png_bad_crc", 51)
        daemon.wait_idle(expected_total=14, timeout=90)
        yield daemon, inbox, stage, rclone_s3, bucket, proxy
    proxy.close()


def test_views_agree(scenario: Any) -> None:
    """status, files, report and /status agree with each other, number for number."""
    daemon, *_ = scenario
    status = daemon.status()
    files = daemon.files()
    report = json.loads(daemon.cli("report", "--json").stdout)
    code, body = http_get(daemon, "/status")
    assert code == 200
    web = json.loads(body)
    expected = {"uploaded": 10, "duplicate": 2, "rejected": 2, "failed": 0}
    for state, n in expected.items():
        assert status["counts"][state] == n
        assert web["counts"][state] == n
        assert sum(1 for f in files if f["state"] == state) == n
    assert report["received"] == len(files) == sum(status["counts"].values()) == 14
    assert report["uploaded"] == 10 and report["duplicates"] == 2 and report["rejected"] == 2
    assert report["rejected_by_reason"] == {"corrupt": 1, "truncated": 1}
    assert {p["action"] for p in report["problems"]} == {"fix"}
    batches = json.loads(daemon.cli("batches", "--json").stdout)
    assert sum(b["received"] for b in batches) == 14
    latest = json.loads(daemon.cli("report", "--batch", "latest", "--json").stdout)
    assert latest["received"] <= 14
    uploaded = next(f for f in files if f["state"] == "uploaded")
    shown = json.loads(daemon.cli("show", str(uploaded["id"]), "--json").stdout)
    assert [e["to"] for e in shown["timeline"] if e["to"]][:2] == ["discovered", "queued"]
    text = daemon.cli("report").stdout
    assert "uploaded" in text and "needs attention" in text


def test_metrics_valid_and_match(scenario: Any, tmp_path: Path) -> None:
    """A live scrape passes promtool check metrics and the counters match the scenario."""
    daemon, *_ = scenario
    promtool = require_tool("promtool")
    code, body = http_get(daemon, "/metrics")
    assert code == 200
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = body.decode()
    assert metric_value(text, "ingestd_files_discovered_total", inbox="office") == 14
    for outcome, n in (("uploaded", 10), ("duplicate", 2), ("rejected", 2), ("failed", 0)):
        assert (
            metric_value(text, "ingestd_files_processed_total", inbox="office", outcome=outcome)
            == n
        ), outcome
    assert metric_value(text, "ingestd_rejections_total", inbox="office", reason="truncated") == 1
    assert metric_value(text, "ingestd_catalog_files", state="uploaded") == 10
    assert metric_value(text, "ingestd_queue_files", state="queued") == 0
    assert metric_value(text, "ingestd_destination_up", destination="main") == 1
    assert metric_value(text, "ingestd_upload_duration_seconds_count", destination="main") == 10
    assert metric_value(text, "ingestd_upload_bytes_total", destination="main") > 0
    code, _ = http_get(daemon, "/healthz")
    assert code == 200
    code, ready = http_get(daemon, "/readyz")
    assert code == 200, ready


def test_alert_rules(tmp_path: Path) -> None:
    """The shipped alert rules pass promtool check rules and their unit tests."""
    promtool = require_tool("promtool")
    rules = Path(__file__).parents[2] / "config" / "prometheus"
    for argv in (
        ["check", "rules", "ingestd-alerts.yml"],
        ["test", "rules", "ingestd-alerts.test.yml"],
    ):
        result = subprocess.run(
            [promtool, *argv], cwd=rules, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_pause_retry_cancel(scenario: Any) -> None:
    """pause stops new starts; retry of a failed file uploads it; cancel aborts a multipart
    upload on the S3 server and leaves the source in place."""
    daemon, inbox, stage, server, bucket, proxy = scenario
    out = daemon.cli("pause").stdout
    assert "paused" in out and "within 2 seconds" in out
    held = drop(inbox, stage, "txt", 70)
    daemon.wait_for(
        lambda: daemon.status()["counts"]["queued"] == 1,
        timeout=20,
        what="file queued while paused",
    )
    time.sleep(3)
    status = daemon.status()
    assert status["counts"]["queued"] == 1 and status["destinations"]["main"]["paused"]
    # make it fail: the source vanishes while queued (max_attempts = 1)
    info = next(f for f in daemon.files("--state", "queued"))
    saved = stage / "saved.txt"
    os.rename(held, saved)
    st = saved.stat()
    daemon.cli("resume")
    daemon.wait_for(
        lambda: daemon.status()["counts"]["failed"] == 1, timeout=20, what="vanished file failed"
    )
    os.rename(saved, held)
    os.utime(held, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = daemon.cli("retry", str(info["id"])).stdout
    assert "back in the queue" in out
    daemon.wait_for(
        lambda: daemon.status()["counts"]["uploaded"] == 11,
        timeout=30,
        what="retried file uploaded",
    )
    # cancel a multipart upload in progress (the link is slowed so it takes a while)
    proxy.rate_limit(2 * MIB)
    big = stage / "big.bin"
    big.write_bytes(os.urandom(40 * MIB))
    os.rename(big, inbox / "big.bin")
    uploading = daemon.wait_for(
        lambda: [f for f in daemon.files("--state", "uploading") if f["path"] == "big.bin"],
        timeout=30,
        what="big file uploading",
    )
    file_id = uploading[0]["id"]
    db = daemon.state_dir / "catalog.db"
    daemon.wait_for(lambda: _upload_id(db, file_id), timeout=30, what="multipart started")
    upload_id = _upload_id(db, file_id)
    out = daemon.cli("cancel", str(file_id)).stdout
    assert "aborted" in out
    daemon.wait_for(
        lambda: daemon.status()["counts"]["cancelled"] == 1, timeout=30, what="cancelled"
    )
    proxy.rate_limit(None)
    assert (inbox / "big.bin").exists(), "a cancelled file's source stays in place"
    uploads = server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert upload_id not in [u["UploadId"] for u in uploads]
    bad = daemon.cli("cancel", str(file_id), check=False)
    assert bad.returncode == 1 and "already cancelled" in bad.stdout
    missing = daemon.cli("retry", "999999", check=False)
    assert missing.returncode == 1 and "no such file" in missing.stdout


def _upload_id(db: Path, file_id: int) -> str | None:
    with sqlite3.connect(db, timeout=30) as conn:
        row = conn.execute("SELECT upload_id FROM files WHERE id = ?", (file_id,)).fetchone()
    return row[0] if row else None


def test_status_page_in_chromium(scenario: Any, tmp_path: Path) -> None:
    """The live page, loaded in headless Chromium during an upload, shows the current file
    and the counts; a screenshot is kept with the test's files."""
    daemon, inbox, stage, _server, _bucket, proxy = scenario
    chromium = require_tool("chromium")
    proxy.rate_limit(2 * MIB)
    big = stage / "page-test.bin"
    big.write_bytes(os.urandom(30 * MIB))
    os.rename(big, inbox / "page-test.bin")
    daemon.wait_for(
        lambda: daemon.status()["destinations"]["main"]["current"],
        timeout=30,
        what="upload in progress",
    )
    url = f"http://127.0.0.1:{daemon.http_port}/"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--virtual-time-budget=5000",
    ]
    shot = tmp_path / "status-page.png"
    subprocess.run(
        [chromium, *flags, "--window-size=420,900", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=90,
        check=True,
    )
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    proxy.rate_limit(None)
    assert shot.exists() and shot.stat().st_size > 5000
    assert "page-test.bin" in dom
    assert 'id="count-uploaded">10<' in dom
