"""The bare boto3 peers: what a few lines of boto3 do without any bookkeeping.

    python -m bench.boto3_peer loop      --endpoint URL --bucket B --prefix P DIR
    python -m bench.boto3_peer multipart --endpoint URL --bucket B --prefix P DIR

``loop`` sends every file of DIR with one sequential ``put_object``. ``multipart`` sends files of
16 MiB and more as 8 MiB parts, 4 in flight (smaller files with ``put_object``). Both sign with
UNSIGNED-PAYLOAD and send no checksum, so no byte is hashed on the client: the ceiling.
Credentials come from the environment (AWS_ACCESS_KEY_ID, ...).
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

PART = 8 * 1024 * 1024
CONCURRENCY = 4
THRESHOLD = 16 * 1024 * 1024


def make_client(endpoint: str) -> Any:
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        max_pool_connections=CONCURRENCY + 2,
    )
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def put_file(client: Any, bucket: str, key: str, path: Path) -> None:
    with path.open("rb") as fh:
        client.put_object(Bucket=bucket, Key=key, Body=fh.read())


def multipart_file(client: Any, bucket: str, key: str, path: Path) -> None:
    """create -> parts (CONCURRENCY at a time, read with pread) -> complete."""
    size = path.stat().st_size
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    fd = os.open(path, os.O_RDONLY)

    def send(number: int) -> dict[str, Any]:
        offset = (number - 1) * PART
        body = os.pread(fd, min(PART, size - offset), offset)
        answer = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            parts = list(pool.map(send, range(1, -(-size // PART) + 1)))
    finally:
        os.close(fd)
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boto3_peer")
    parser.add_argument("mode", choices=("loop", "multipart"))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("source", type=Path)
    args = parser.parse_args()
    client = make_client(args.endpoint)
    for path in sorted(args.source.iterdir()):
        key = f"{args.prefix}/{path.name}"
        if args.mode == "multipart" and path.stat().st_size >= THRESHOLD:
            multipart_file(client, args.bucket, key, path)
        else:
            put_file(client, args.bucket, key, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
