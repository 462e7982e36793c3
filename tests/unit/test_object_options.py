"""The pure parts of storage class, encryption and tags: the SSE-C key parser, the arguments
each S3 call gets, an answer checked against what was asked, tag rules and rendering, and the
configuration's sentences naming file, key and problem (the servers: integration tests)."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from ingestd.catalog.rows import FileRow
from ingestd.config import load_settings
from ingestd.destinations.factory import object_options
from ingestd.destinations.s3.object_options import (
    CustomerKey,
    ObjectOptions,
    parse_customer_key,
    reports_encryption,
    same_kms_key,
)
from ingestd.errors import ConfigError
from ingestd.keys import KeyFields
from ingestd.pipeline.lane.upload import object_tags
from ingestd.redact import redact_text
from ingestd.states import FileState
from ingestd.tags import TagFields, legal, render_tags, tag_problems, tagging_header

RAW = bytes(range(32))
B64 = base64.b64encode(RAW).decode()
MD5 = base64.b64encode(hashlib.md5(RAW, usedforsecurity=False).digest()).decode()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def row_for(relpath: str, **kw: Any) -> FileRow:
    values: dict[str, Any] = dict(
        id=1, inbox="hr", relpath=relpath, source_path=f"/in/{relpath}", source_key=None,
        owner="", size=1, mtime_ns=0, sha256="ab" * 32, detected_type="pdf",
        content_type="application/pdf", dedup_scope=None, state=FileState.UPLOADING,
        reason_code=None, reason=None, attempts=0, next_attempt_at=None, destination="main",
        key=None, original_id=None, batch_id=7, discovered_at=datetime(2026, 3, 4).timestamp(),
        queued_at=None, started_at=None, finished_at=None, updated_at=0.0, lease_owner=None,
        lease_expires=None, cancel_requested=False, post_done=False, post_path=None,
        upload_id=None, part_size=None, bytes_sent=0, upload_seconds=None, md5=None,
        ctime_ns=None,
    )  # fmt: skip
    values.update(kw)
    return FileRow(**values)


# ----------------------------------------------------------------- the SSE-C key


@pytest.mark.parametrize("text", [RAW, B64.encode(), B64.encode() + b"\n", RAW.hex().encode()])
def test_a_key_is_raw_bytes_base64_or_hex(text: bytes) -> None:
    assert parse_customer_key(text).md5 == MD5


@pytest.mark.parametrize("text", [b"", b"short", base64.b64encode(bytes(16)), b"x" * 64])
def test_anything_else_is_refused_without_quoting_it(text: bytes) -> None:
    with pytest.raises(ValueError, match="is not an SSE-C key") as info:
        parse_customer_key(text)
    if text:
        assert text.decode() not in str(info.value)


def test_the_key_is_never_shown_and_goes_base64_with_its_md5() -> None:
    key = CustomerKey(RAW)
    assert B64 not in repr(key) + str(key) + repr(ObjectOptions(customer_key=key))
    assert key.params() == {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": B64,
        "SSECustomerKeyMD5": MD5,
    }


def test_redact_masks_the_key_as_botocore_would_quote_it() -> None:
    for text in (
        f"Invalid type for parameter SSECustomerKey, value: {B64}, type: str",
        f"{{'SSECustomerKey': '{B64}', 'SSECustomerKeyMD5': '{MD5}'}}",
        f"x-amz-server-side-encryption-customer-key: {B64}",
    ):
        shown = redact_text(text)
        assert B64 not in shown and "********" in shown, shown
    assert MD5 in redact_text(f"x-amz-server-side-encryption-customer-key-md5: {MD5}")


# ----------------------------------------------------------------- arguments per call


def test_write_params_carry_class_encryption_and_tags() -> None:
    options = ObjectOptions(
        storage_class="GLACIER_IR",
        server_side_encryption="aws:kms",
        kms_key_id="k-1",
        bucket_key_enabled=True,
    )
    params = options.write_params({"a b": "x/y"})
    assert params == {
        "StorageClass": "GLACIER_IR",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k-1",
        "BucketKeyEnabled": True,
        "Tagging": "a%20b=x%2Fy",
    }
    assert options.access_params() == {}
    assert ObjectOptions().write_params({}) == {}


def test_sse_c_goes_on_writes_and_on_every_other_call() -> None:
    options = ObjectOptions(customer_key=CustomerKey(RAW))
    assert options.write_params({})["SSECustomerKeyMD5"] == MD5
    assert options.access_params()["SSECustomerKey"] == B64


def test_etags_are_md5s_only_without_kms_or_sse_c() -> None:
    assert (
        ObjectOptions().etag_is_md5 and ObjectOptions(server_side_encryption="AES256").etag_is_md5
    )
    assert not ObjectOptions(server_side_encryption="aws:kms").etag_is_md5
    assert not ObjectOptions(customer_key=CustomerKey(RAW)).etag_is_md5


# ----------------------------------------------------------------- verification


def test_an_answer_proves_the_encryption_or_names_the_shortfall() -> None:
    aes = ObjectOptions(server_side_encryption="AES256")
    assert aes.encryption_problems({"ServerSideEncryption": "AES256"}) == []
    assert aes.encryption_problems({}) == ["stored with no encryption instead of AES256"]
    kms = ObjectOptions(
        server_side_encryption="aws:kms", kms_key_id="1234", bucket_key_enabled=True
    )
    arn = "arn:aws:kms:eu-west-1:111:key/1234"
    assert kms.encryption_problems({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": arn}) == []
    assert kms.encryption_problems(
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "9999", "BucketKeyEnabled": False}
    ) == [
        "encrypted with KMS key 9999 instead of 1234",
        "stored without the S3 Bucket Key asked for",
    ]
    sse_c = ObjectOptions(customer_key=CustomerKey(RAW))
    assert (
        sse_c.encryption_problems({"SSECustomerAlgorithm": "AES256", "SSECustomerKeyMD5": MD5})
        == []
    )
    assert sse_c.encryption_problems(
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKeyMD5": "other"}
    ) == ["stored with another SSE-C key than the configured one"]
    assert sse_c.encryption_problems({"ServerSideEncryption": "AES256"}) == [
        "stored with AES256 instead of SSE-C (AES256)"
    ]
    assert ObjectOptions().encryption_problems({}) == []


def test_storage_class_is_checked_where_head_reports_it() -> None:
    options = ObjectOptions(storage_class="STANDARD_IA")
    assert options.stored_problems({"StorageClass": "STANDARD_IA"}) == []
    assert options.stored_problems({}) == [
        "stored in storage class STANDARD instead of STANDARD_IA"
    ]
    assert ObjectOptions(storage_class="STANDARD").stored_problems({}) == []


def test_kms_keys_compare_by_id_and_aliases_pass() -> None:
    assert same_kms_key("arn:aws:kms:r:1:key/abc", "abc")
    assert same_kms_key("abc", "arn:aws:kms:r:1:key/abc")
    assert not same_kms_key("abc", "arn:aws:kms:r:1:key/abd")
    assert same_kms_key("alias/records", "arn:aws:kms:r:1:key/abc")
    assert not reports_encryption({"ETag": "x"}) and reports_encryption(
        {"ServerSideEncryption": "x"}
    )


# ----------------------------------------------------------------- tags


def fields(relpath: str = "a/report.pdf") -> TagFields:
    key = KeyFields(inbox="hr", relpath=relpath, sha256="f" * 64, arrived=datetime(2026, 1, 9))
    return TagFields(key=key, detected_type="pdf", batch="12")


def test_tags_render_every_field_and_stay_legal() -> None:
    templates = {"f": "{inbox}:{yyyy}{mm}{dd}", "t": "{detected_type}-{batch}", "n": "{name}"}
    assert render_tags(templates, fields()) == {
        "f": "hr:20260109",
        "t": "pdf-12",
        "n": "report.pdf",
    }
    hostile = render_tags({"n": "{name}"}, fields("x/a&b%c\x1b\u202e\udce9'(1).pdf"))
    assert hostile == {"n": "a_b_c_____1_.pdf"}
    assert len(render_tags({"n": "{name}"}, fields("é" * 300))["n"]) == 256
    assert legal("Zoë 2026 +=/:@_.-") == "Zoë 2026 +=/:@_.-"


def test_the_tagging_header_round_trips() -> None:
    tags = {"path": "a/b c+d=e&f", "ü": "é"}
    assert dict(parse_qsl(tagging_header(tags))) == tags


def test_tag_tables_are_checked_against_s3_limits() -> None:
    assert tag_problems({"team": "hr", "month": "{yyyy}-{mm}"}) == []
    too_many = {f"k{i}": "v" for i in range(11)}
    assert tag_problems(too_many) == ["has 11 tags; S3 allows at most 10 per object"]
    problems = tag_problems(
        {"k" * 129: "v", "aws:x": "v", "a,b": "v", "v": "{nmae}", "w": "a,b", "x": "v" * 257}
    )
    assert problems == [
        f"tag {'k' * 129!r}: the key must be 1 to 128 characters long",
        "tag 'aws:x': keys starting with 'aws:' are reserved for AWS",
        "tag 'a,b': the key holds characters S3 does not allow in tags: ','",
        "tag 'v': unknown placeholder(s) {nmae}; known: {batch}, {dd}, {detected_type}, {ext}, "
        "{inbox}, {mm}, {name}, {owner}, {reldir}, {relpath}, {sha256}, {stem}, {yyyy}; "
        "did you mean {name} for {nmae}?",
        "tag 'w': the value holds characters S3 does not allow in tags: ','",
        "tag 'x': the value is longer than S3's 256 characters",
    ]


# ----------------------------------------------------------------- configuration

S3 = """
state_dir = "state"
[destinations.main]
type = "s3"
bucket = "records"
{dest}
[destinations.local]
type = "directory"
path = "store"
[[inboxes]]
name = "hr"
path = "hr"
destination = "main"
{inbox}
[[inboxes]]
name = "scans"
path = "scans"
destination = "local"
{local}
"""


def problems_of(tmp_path: Path, dest: str = "", inbox: str = "", local: str = "") -> list[str]:
    path = tmp_path / "ingestd.toml"
    path.write_text(S3.format(dest=dest, inbox=inbox, local=local))
    try:
        load_settings(path)
    except ConfigError as exc:
        return [p.removeprefix(f"{path}: ") for p in exc.problems]
    return []


def test_settings_that_contradict_each_other_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key\n")
    problems = problems_of(
        tmp_path,
        dest='storage_class = "standard-ia"\nsse_kms_key_id = "k"\nbucket_key_enabled = true\n'
        'server_side_encryption = "AES256"\nsse_customer_key_file = "bad.key"\n'
        'sse_customer_key_env = "KEY"\ntags = { "a,b" = "x" }',
        inbox='tags = { t = "{nope}" }',
        local='tags = { t = "x" }',
    )
    assert problems == [
        "destinations.main.storage_class: must be an S3 storage class such as STANDARD_IA, "
        "GLACIER_IR or INTELLIGENT_TIERING (upper case, words joined by '_')",
        "destinations.main.tags: tag 'a,b': the key holds characters S3 does not allow in "
        "tags: ','",
        "inboxes[0].tags: tag 't': unknown placeholder(s) {nope}; known: {batch}, {dd}, "
        "{detected_type}, {ext}, {inbox}, {mm}, {name}, {owner}, {reldir}, {relpath}, {sha256}, "
        "{stem}, {yyyy}",
        "inboxes[1] (scans).tags: tags are stored by S3 destinations only",
        'destinations.main.sse_kms_key_id: needs server_side_encryption = "aws:kms"',
        'destinations.main.bucket_key_enabled: needs server_side_encryption = "aws:kms"',
        "destinations.main.sse_customer_key_env: set sse_customer_key_file or this, not both",
        "destinations.main.server_side_encryption: SSE-C (sse_customer_key_*) replaces it: "
        "remove one",
        f"destinations.main.sse_customer_key_file: {tmp_path / 'bad.key'} is not an SSE-C key: "
        "expected 32 bytes, their base64 (44 characters, openssl rand -base64 32) or 64 hex "
        "digits; found 10 bytes",
    ]


def test_inbox_and_destination_tags_together_stay_within_ten(tmp_path: Path) -> None:
    dest = "tags = { " + ", ".join(f'd{i} = "x"' for i in range(6)) + " }"
    inbox = "tags = { " + ", ".join(f'i{i} = "x"' for i in range(5)) + ', d0 = "y" }'
    assert problems_of(tmp_path, dest=dest, inbox=inbox) == [
        "inboxes[0] (hr).tags: with destination 'main''s tags a file gets 11; S3 allows at most "
        "10 per object"
    ]


def test_a_missing_key_file_is_a_config_problem_but_an_unset_credential_is_not(
    tmp_path: Path,
) -> None:
    assert problems_of(tmp_path, dest='sse_customer_key_file = "nowhere.key"') == [
        f"destinations.main.sse_customer_key_file: {tmp_path / 'nowhere.key'} does not exist"
    ]
    # The CLI run by an operator has no $CREDENTIALS_DIRECTORY: only the daemon needs the key.
    assert problems_of(tmp_path, dest='sse_customer_key_env = "RECORDS_SSE_C_KEY"') == []


def test_the_key_comes_from_a_systemd_credential_or_holds_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ingestd.toml"
    path.write_text(
        S3.format(dest='sse_customer_key_env = "RECORDS_SSE_C_KEY"', inbox="", local="")
    )
    cfg = load_settings(path).destinations["main"]
    options, unusable = object_options("main", cfg)  # type: ignore[arg-type]
    assert options.customer_key is None
    assert unusable == (
        "destinations.main.sse_customer_key_env: no variable or systemd credential named "
        "RECORDS_SSE_C_KEY"
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "RECORDS_SSE_C_KEY").write_text(B64 + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    options, unusable = object_options("main", cfg)  # type: ignore[arg-type]
    assert unusable == "" and options.customer_key is not None
    assert options.customer_key.md5 == MD5
    (creds / "RECORDS_SSE_C_KEY").write_text("garbage")
    assert problems_of(tmp_path, dest='sse_customer_key_env = "RECORDS_SSE_C_KEY"') == [
        "destinations.main.sse_customer_key_env: the key in RECORDS_SSE_C_KEY is not an SSE-C "
        "key: expected 32 bytes, their base64 (44 characters, openssl rand -base64 32) or 64 hex "
        "digits; found 7 bytes"
    ]


def test_an_unreadable_key_makes_every_object_call_misconfigured(tmp_path: Path) -> None:
    from ingestd.destinations.s3.destination import S3Destination
    from ingestd.errors import DestinationMisconfigured

    dest = S3Destination(name="main", bucket="records", unusable="the key is gone")
    with pytest.raises(DestinationMisconfigured, match="'main': the key is gone"):
        dest.probe()
    with pytest.raises(DestinationMisconfigured):
        dest.lookup("k")


def test_the_lane_renders_a_rows_tags_from_its_fields() -> None:
    from dataclasses import replace

    templates = {"t": "{detected_type}", "b": "{batch}", "d": "{yyyy}{mm}{dd}", "i": "{inbox}"}
    row = row_for("x/y.pdf")
    assert object_tags(row, templates=templates) == {
        "t": "pdf",
        "b": "7",
        "d": "20260304",
        "i": "hr",
    }
    bare = replace(row, batch_id=None, detected_type=None)
    assert object_tags(bare, templates={"b": "{batch}", "t": "{detected_type}"}) == {
        "b": "",
        "t": "",
    }
    assert object_tags(row, templates={}) == {}
