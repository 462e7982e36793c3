"""The stale multipart sweep against both real S3 servers: foreign uploads older than the
threshold are aborted, young ones kept, and an upload the catalog owns is never touched.
Also ``ingestd cleanup [--dry-run]`` as a CLI process."""

from __future__ import annotations

import hashlib
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from ingestd.catalog.repo import Catalog
from ingestd.catalog.rows import PartRecord
from ingestd.destinations.s3.destination import S3Destination
from ingestd.housekeeping import sweep_stale_uploads
from tests.e2e.harness import INGESTD, inbox_toml, s3_destination_toml
from tests.servers.s3 import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def destination(server: S3Server, bucket: str) -> S3Destination:
    return S3Destination(
        name="main",
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        addressing_style="path",
        access_key_id=server.key,
        secret_access_key=server.secret,
        connect_timeout=2.0,
        read_timeout=10.0,
    )


def server_uploads(client: S3Client, bucket: str) -> dict[str, dict[str, Any]]:
    """upload id -> {key, initiated} of every multipart upload in progress in the bucket."""
    try:
        answer = client.list_multipart_uploads(Bucket=bucket)
    except ClientError as exc:
        # rclone answers NoSuchUpload for a bucket without any upload left.
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return {}
        raise
    return {
        u["UploadId"]: {"key": u["Key"], "initiated": u["Initiated"]}
        for u in answer.get("Uploads", [])
    }


def upload_one_part(client: S3Client, bucket: str, key: str, upload_id: str) -> PartRecord:
    body = f"part one of {key}\n".encode() * 64
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)
    return PartRecord(1, len(body), answer["ETag"], md5)


def foreign_upload(client: S3Client, bucket: str, key: str) -> str:
    """A multipart upload with one part that no catalog knows (a crashed other tool)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    upload_one_part(client, bucket, key, upload_id)
    return upload_id


def owned_upload(catalog: Catalog, client: S3Client, bucket: str, tmp_path: Path) -> str:
    """An upload in progress as the daemon records it: observe -> queue -> claim_next ->
    upload_started -> part_done, the upload itself created on the server in between."""
    source = tmp_path / "owned.bin"
    source.write_bytes(b"owned " * 1000)
    st = source.stat()
    seen = catalog.observe(
        inbox="scans",
        relpath="owned.bin",
        source_path=str(source),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )
    catalog.queue(
        seen.file_id,
        sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        detected_type=None,
        content_type="application/octet-stream",
        destination="main",
        dedup_scope="global",
    )
    row = catalog.claim_next("main", owner="test-node", lease_seconds=600)
    assert row is not None and row.id == seen.file_id
    key = "scans/owned.bin"
    catalog.plan_key(row.id, key)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    catalog.upload_started(row.id, key=key, upload_id=upload_id, part_size=5 * MIB)
    catalog.part_done(row.id, upload_id, upload_one_part(client, bucket, key, upload_id))
    return upload_id


def test_sweep_aborts_old_foreign_keeps_young_and_owned(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Judged by the ages the server reports: young foreign uploads are kept, old ones are
    aborted (a dry run only reports them), the catalog's own upload is never touched."""
    bucket = s3_server.create_bucket()
    client = s3_server.client()
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    dest = {"main": destination(s3_server, bucket)}
    try:
        owned = owned_upload(catalog, client, bucket, tmp_path)
        foreign = {foreign_upload(client, bucket, f"other-tool/{n}.bin") for n in range(2)}
        uploads = server_uploads(client, bucket)
        assert set(uploads) == foreign | {owned}
        newest = max(u["initiated"] for u in uploads.values())

        # "Now" just after the newest upload began: every foreign upload is young.
        young = sweep_stale_uploads(
            catalog.engine, dest, stale_hours=1, now=newest + timedelta(minutes=1)
        )
        assert [(r.aborted, r.kept_own, r.kept_young, r.error) for r in young] == [([], 1, 2, None)]
        assert set(server_uploads(client, bucket)) == foreign | {owned}

        # A month later, a dry run: reported, not aborted.
        later = newest + timedelta(days=30)
        dry = sweep_stale_uploads(catalog.engine, dest, stale_hours=24, now=later, dry_run=True)
        assert {u.upload_id for u in dry[0].aborted} == foreign
        assert set(server_uploads(client, bucket)) == foreign | {owned}

        # The real sweep: the foreign uploads go, ours stays with its part.
        done = sweep_stale_uploads(catalog.engine, dest, stale_hours=24, now=later)
        assert {u.upload_id for u in done[0].aborted} == foreign
        assert (done[0].kept_own, done[0].kept_young, done[0].error) == (1, 0, None)
        assert set(server_uploads(client, bucket)) == {owned}
        parts = client.list_parts(Bucket=bucket, Key="scans/owned.bin", UploadId=owned)
        assert [p["PartNumber"] for p in parts["Parts"]] == [1]
    finally:
        catalog.close()


def test_sweep_with_mixed_ages_in_one_pass(tmp_path: Path, rclone_s3: S3Server) -> None:
    """One sweep, one threshold: the older foreign upload goes, the younger one stays.
    rclone only: moto reports the same fixed Initiated time for every upload."""
    bucket = rclone_s3.create_bucket()
    client = rclone_s3.client()
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        owned = owned_upload(catalog, client, bucket, tmp_path)
        old = foreign_upload(client, bucket, "other-tool/old.bin")
        time.sleep(1.5)
        young = foreign_upload(client, bucket, "other-tool/young.bin")
        uploads = server_uploads(client, bucket)
        gap = uploads[young]["initiated"] - uploads[old]["initiated"]
        assert gap >= timedelta(seconds=1), uploads
        # The threshold is half the gap; "now" a quarter of it after the young one began.
        results = sweep_stale_uploads(
            catalog.engine,
            {"main": destination(rclone_s3, bucket)},
            stale_hours=gap.total_seconds() / 2 / 3600,
            now=uploads[young]["initiated"] + gap / 4,
        )
        assert [u.upload_id for u in results[0].aborted] == [old]
        assert (results[0].kept_own, results[0].kept_young) == (1, 1)
        assert set(server_uploads(client, bucket)) == {owned, young}
    finally:
        catalog.close()


def cleanup_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INGESTD, "cleanup", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cleanup_cli_dry_run_then_for_real(tmp_path: Path, s3_server: S3Server) -> None:
    """``ingestd cleanup --dry-run`` names the stale foreign upload and leaves it;
    ``ingestd cleanup`` aborts it; the catalog's own upload survives both."""
    bucket = s3_server.create_bucket()
    client = s3_server.client()
    state, inbox = tmp_path / "state", tmp_path / "inbox"
    state.mkdir()
    inbox.mkdir()
    config = tmp_path / "ingestd.toml"
    config.write_text(
        f'state_dir = "{state}"\nhttp_listen = ""\n'
        "[housekeeping]\nstale_upload_hours = 0.0001\n"  # 0.36 s
        + s3_destination_toml(s3_server, bucket=bucket)
        + inbox_toml("scans", inbox)
    )
    catalog = Catalog.open(f"sqlite:///{state / 'catalog.db'}")
    try:
        owned = owned_upload(catalog, client, bucket, tmp_path)
    finally:
        catalog.close()
    foreign_key = "other-tool/abandoned.bin"
    foreign = foreign_upload(client, bucket, foreign_key)
    time.sleep(1.0)

    dry = cleanup_cli(config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would abort stale upload {foreign_key} (id {foreign}" in dry.stdout, dry.stdout
    assert "main: 1 stale upload(s) would abort; 1 in progress kept" in dry.stdout, dry.stdout
    assert "scans/owned.bin" not in dry.stdout
    assert set(server_uploads(client, bucket)) == {owned, foreign}

    real = cleanup_cli(config)
    assert real.returncode == 0, real.stderr
    assert f"aborted stale upload {foreign_key} (id {foreign}" in real.stdout, real.stdout
    assert "main: 1 stale upload(s) aborted; 1 in progress kept" in real.stdout, real.stdout
    assert set(server_uploads(client, bucket)) == {owned}
