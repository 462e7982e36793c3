"""Storage class, encryption and tags from the configuration file to the stored objects, with
the real CLI process (``scan --once``, ``doctor``) against moto and rclone serve s3: what the
server stored is read back with head_object and get_object_tagging."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml, s3_destination_toml
from tests.servers.s3 import REGION, S3Server

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def write_text(path: Path, size: int) -> Path:
    """A plain-text file of ``size`` bytes (large enough for a multipart upload)."""
    line = b"ingestd object options line of text\n"
    path.write_bytes((line * (size // len(line) + 1))[:size])
    return path


def encryption_check(doctor_json: str) -> dict[str, Any]:
    checks = json.loads(doctor_json)["checks"]
    found: dict[str, Any] = next(c for c in checks if c["name"] == "destination main encryption")
    return found


def objects(server: S3Server, bucket: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_kms_storage_class_and_merged_tags_reach_every_object(
    tmp_path: Path, moto_s3: S3Server
) -> None:
    kms = boto3.client(
        "kms",
        endpoint_url=moto_s3.endpoint_url,
        aws_access_key_id=moto_s3.key,
        aws_secret_access_key=moto_s3.secret,
        region_name=REGION,
    )
    kms_key = kms.create_key()["KeyMetadata"]["Arn"]
    bucket = moto_s3.create_bucket()
    inbox = tmp_path / "hr"
    inbox.mkdir()
    small = samples.write_sample("pdf", inbox, seed=3)
    large = write_text(inbox / "big ledger.txt", 6 * MIB)
    destination = (
        s3_destination_toml(
            moto_s3,
            bucket=bucket,
            storage_class="STANDARD_IA",
            server_side_encryption="aws:kms",
            sse_kms_key_id=kms_key,
            part_size_mib=5,
            multipart_threshold_mib=5,
        )
        + 'tags = { team = "records", kind = "{detected_type}", month = "{yyyy}-{mm}" }\n'
    )
    daemon = Ingestd(
        tmp_path / "d",
        destination=destination,
        inboxes=[
            inbox_toml("hr", inbox, settle_seconds=0.2)
            + 'tags = { team = "hr", file = "{name}", batch = "{batch}" }\n'
        ],
    )
    result = daemon.cli("scan", "--once", check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    keys = objects(moto_s3, bucket)
    assert len(keys) == 2, keys
    client = moto_s3.client()
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] in (kms_key, kms_key.rpartition("/")[2])
        assert head["StorageClass"] == "STANDARD_IA"
        tags = {
            t["Key"]: t["Value"]
            for t in client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        }
        name = Path(key).name
        assert tags["team"] == "hr"  # the inbox's wins over the destination's
        assert tags["file"] == name
        assert tags["kind"] == ("pdf" if name == small.name else "txt")
        assert tags["month"][:4].isdigit() and tags["batch"].isdigit()
        assert set(tags) == {"team", "file", "batch", "kind", "month"}
    assert {Path(k).name for k in keys} == {small.name, large.name}


def test_sse_c_key_from_a_file_on_rclone_and_doctor_probes_it(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    raw = os.urandom(32)
    key_file = tmp_path / "sse-c.key"
    key_file.write_text(base64.b64encode(raw).decode() + "\n")
    key_file.chmod(0o600)
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "exams"
    inbox.mkdir()
    samples.write_sample("pdf", inbox, seed=4)
    write_text(inbox / "answers.txt", 6 * MIB)
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            rclone_s3,
            bucket=bucket,
            sse_customer_key_file=key_file,
            part_size_mib=5,
            multipart_threshold_mib=5,
        ),
        inboxes=[inbox_toml("exams", inbox, settle_seconds=0.2)],
    )
    result = daemon.cli("scan", "--once", check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    md5 = base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()
    keys = objects(rclone_s3, bucket)
    assert len(keys) == 2, keys
    for key in keys:
        head = rclone_s3.client().head_object(
            Bucket=bucket, Key=key, SSECustomerAlgorithm="AES256", SSECustomerKey=raw
        )
        assert (head["SSECustomerAlgorithm"], head["SSECustomerKeyMD5"]) == ("AES256", md5)

    doctor = daemon.cli("doctor", "--json", check=False)
    check = encryption_check(doctor.stdout)
    assert check["ok"] and f"SSE-C (key MD5 {md5})" in check["detail"], check
    assert base64.b64encode(raw).decode() not in doctor.stdout + doctor.stderr
    assert objects(rclone_s3, bucket) == keys  # the probe object was deleted


def test_a_server_ignoring_sse_c_fails_the_doctor_and_the_upload(
    tmp_path: Path, moto_s3: S3Server
) -> None:
    """moto stores SSE-C objects in the clear: doctor says so, and no object is counted."""
    key_file = tmp_path / "sse-c.key"
    key_file.write_bytes(os.urandom(32))
    bucket = moto_s3.create_bucket()
    inbox = tmp_path / "contracts"
    inbox.mkdir()
    samples.write_sample("pdf", inbox, seed=5)
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(moto_s3, bucket=bucket, sse_customer_key_file=key_file),
        inboxes=[inbox_toml("contracts", inbox, settle_seconds=0.2)],
        queue={"max_attempts": 1, "cooldown_seconds": 0},
    )
    check = encryption_check(daemon.cli("doctor", "--json", check=False).stdout)
    assert not check["ok"] and "instead of SSE-C" in check["detail"], check
    result = daemon.cli("scan", "--once", check=False)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    failed = daemon.files("--state", "failed")
    assert len(failed) == 1 and "instead of SSE-C" in failed[0]["reason"], failed
    assert objects(moto_s3, bucket) == []


def test_an_sse_c_credential_missing_at_start_holds_the_lane_until_a_reload_finds_it(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    """The daemon starts without the key (its systemd credential is not there), holds the lane
    as misconfigured (the file stays queued, no attempt counted), and uploads once the
    credential exists and SIGHUP reloads."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "records"
    inbox.mkdir()
    samples.write_sample("pdf", inbox, seed=6)
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            rclone_s3, bucket=bucket, sse_customer_key_env="RECORDS_SSE_C"
        ),
        inboxes=[inbox_toml("records", inbox, settle_seconds=0.2)],
        queue={"probe_max_seconds": 1, "cooldown_seconds": 0},
    )
    with daemon:
        daemon.start(env={"CREDENTIALS_DIRECTORY": str(creds)})

        def held() -> dict[str, Any] | None:
            lane = daemon.status()["destinations"]["main"]
            return lane if lane["up"] is False and lane["last_error"] else None

        lane = daemon.wait_for(held, timeout=30, what="the lane held")
        assert "sse_customer_key_env" in lane["last_error"], lane
        assert "credential named RECORDS_SSE_C" in lane["last_error"], lane
        [queued] = daemon.files("--state", "queued")
        assert queued["attempts"] == 0
        assert objects(rclone_s3, bucket) == []

        raw = os.urandom(32)
        (creds / "RECORDS_SSE_C").write_text(base64.b64encode(raw).decode() + "\n")
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_idle(expected_total=1, timeout=60)
        [stored] = objects(rclone_s3, bucket)
        head = rclone_s3.client().head_object(Bucket=bucket, Key=stored)
        md5 = base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()
        assert head["SSECustomerKeyMD5"] == md5
