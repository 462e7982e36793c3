"""``ingestd scan --once`` exit codes (0 done, 1 a file failed, 2 bad configuration) and
``ingestd status`` before any catalog exists, with the real CLI process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import (
    INGESTD,
    Ingestd,
    bucket_objects,
    inbox_toml,
    s3_destination_toml,
)
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan_once(daemon: Ingestd) -> subprocess.CompletedProcess[str]:
    return daemon.cli("scan", "--once", check=False)


def test_scan_once_exits_0_when_every_file_is_done(tmp_path: Path, rclone_s3: S3Server) -> None:
    """Good, corrupt, empty and duplicate files: each ends uploaded, rejected or duplicate,
    and the one-shot scan exits 0."""
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = {}
    for seed, kind in enumerate(["pdf", "docx", "png", "jpeg", "txt"]):
        path = samples.write_sample(kind, inbox, seed=seed)
        good[path.name] = sha256(path)
    corrupt = {
        samples.write_sample(kind, inbox, seed=10 + i).name: samples.BROKEN[kind].code
        for i, kind in enumerate(["pdf_truncated", "png_bad_crc", "zip_bad_crc", "empty"])
    }
    shutil.copyfile(inbox / "pdf-0.pdf", inbox / "copy-of-pdf-0.pdf")
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(rclone_s3, bucket=bucket),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5)],
    )
    result = scan_once(daemon)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = daemon.status()["counts"]
    assert (counts["uploaded"], counts["duplicate"], counts["rejected"]) == (5, 1, 4), counts
    assert sum(counts.values()) == 10, counts
    objects = bucket_objects(rclone_s3, bucket)
    assert sorted(o["sha256"] for o in objects.values()) == sorted(good.values())
    quarantine = daemon.state_dir / "quarantine" / "scans"
    for name, code in corrupt.items():
        assert (quarantine / name).is_file(), name
        reason = json.loads((quarantine / f"{name}.reason.json").read_text())
        assert reason["codes"] == [code], (name, reason)
    assert not any(inbox.iterdir()), "every source is archived or quarantined"


def test_scan_once_exits_2_listing_every_config_problem(tmp_path: Path) -> None:
    """Several errors in one file: all of them on stderr, each with the file and the key;
    nothing is created."""
    state = tmp_path / "state"
    config = tmp_path / "broken.toml"
    config.write_text(
        f'state_dir = "{state}"\n'
        "frobnicate = 1\n"
        "[queue]\n"
        "cooldown_seconds = -1\n"
        "[destinations.main]\n"
        'type = "s3"\n'
        'bucket = "ingest"\n'
        "part_size_mib = 1\n"
        "[[inboxes]]\n"
        'name = "scans"\n'
        f'path = "{tmp_path / "inbox"}"\n'
        'destination = "mian"\n'
        'colour = "red"\n'
    )
    result = subprocess.run(
        [*INGESTD, "scan", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78, (result.returncode, result.stderr)  # exitcodes.CONFIG
    lines = result.stderr.splitlines()
    assert "invalid configuration" in lines[0], result.stderr
    problems = [line for line in lines[1:] if line.strip()]
    for key in (
        "frobnicate",
        "queue.cooldown_seconds",
        "destinations.main.part_size_mib",
        "inboxes[0].colour",
        "mian",
    ):
        matching = [line for line in problems if key in line]
        assert matching, f"{key} not reported:\n{result.stderr}"
        assert all(str(config) in line for line in matching), result.stderr
    assert all(str(config) in line for line in problems), result.stderr
    assert not state.exists(), "a rejected configuration must not create anything"


def test_scan_once_exits_1_when_a_file_failed(tmp_path: Path) -> None:
    """A file the destination cannot store (its key's folder is a regular file) fails after
    max_attempts = 1; the other file is uploaded; the scan exits 1."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    (store / "bad").write_text("a regular file where the key needs a folder\n")
    samples.write_txt(inbox / "bad.txt", 1)
    samples.write_txt(inbox / "good.txt", 2)
    good_sha = sha256(inbox / "good.txt")
    destination = (
        f'[destinations.main]\ntype = "directory"\npath = "{store}"\n'
        'key_template = "{stem}/{name}"\n'
    )
    daemon = Ingestd(
        tmp_path / "d",
        destination=destination,
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
        queue={"max_attempts": 1},
    )
    result = scan_once(daemon)
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    by_path = {f["path"]: f for f in daemon.files()}
    assert by_path["bad.txt"]["state"] == "failed", by_path
    assert by_path["bad.txt"]["attempts"] == 1
    assert "bad" in (by_path["bad.txt"]["reason"] or ""), by_path["bad.txt"]
    assert by_path["good.txt"]["state"] == "uploaded", by_path
    assert sha256(store / "good" / "good.txt") == good_sha
    assert (inbox / "bad.txt").exists(), "a failed file stays where it was"


def test_scan_once_waits_for_a_down_destination(tmp_path: Path, rclone_s3: S3Server) -> None:
    """An unreachable destination is not a failed file: the scan holds (no attempt burned)
    and exits 0 once the destination is back."""
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = samples.write_pdf(inbox / "cv.pdf", 7)
    sha = sha256(path)
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        proxy.cut("reset")
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3, bucket=bucket, endpoint=f"http://127.0.0.1:{proxy.port}"
            ),
            inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
            queue={"max_attempts": 1},
        )
        with daemon.log.open("ab") as log:
            process = subprocess.Popen(
                [*INGESTD, "scan", "--once", "--config", str(daemon.config)],
                stdout=log,
                stderr=log,
                env=dict(os.environ),
            )
        try:
            daemon.process = process  # wait_for fails at once if the scan exits early
            daemon.wait_for(
                lambda: daemon.status()["destinations"]["main"]["up"] is False,
                timeout=30,
                what="destination reported down",
            )
            time.sleep(3)  # several probes
            assert process.poll() is None, daemon.tail()
            held = daemon.files()
            proxy.restore()
            code = process.wait(timeout=60)
        finally:
            daemon.process = None
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert [(f["state"], f["attempts"]) for f in held] == [("queued", 0)], held
    assert code == 0, daemon.tail()
    assert daemon.status()["counts"]["uploaded"] == 1
    assert [o["sha256"] for o in bucket_objects(rclone_s3, bucket).values()] == [sha]


def test_status_without_catalog_says_so(tmp_path: Path) -> None:
    """``ingestd status`` on a configuration that never ran: non-zero, "no catalog", and no
    catalog is created by asking."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=f'[destinations.main]\ntype = "directory"\npath = "{store}"\n',
        inboxes=[inbox_toml("scans", inbox)],
    )
    for args in (["status"], ["status", "--json"]):
        result = daemon.cli(*args, check=False)
        assert result.returncode != 0, result.stdout
        assert "no catalog" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    assert not daemon.catalog_exists()
