"""``redact``: credentials masked in URLs, free text and configuration dumps."""

from __future__ import annotations

import pytest

from ingestd.redact import (
    MASK,
    mask_hook_url,
    mask_settings,
    mask_url,
    redact_text,
    scrub_url_parts,
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql://ingest:hunter2@db.example/ingestd",
            "postgresql://ingest:********@db.example/ingestd",
        ),
        (  # an unencoded "@" in the password must not leave its tail visible
            "postgresql://ingest:p@ss@db.example/ingestd",
            "postgresql://ingest:********@db.example/ingestd",
        ),
        (
            "postgresql://ingest@db.example/ingestd?password=hunter2&sslmode=require",
            "postgresql://ingest@db.example/ingestd?password=********&sslmode=require",
        ),
        ("https://gate/ready?token=abc&x=1", "https://gate/ready?token=********&x=1"),
        (
            "https://b.s3/k?X-Amz-Credential=AKIA1&X-Amz-Signature=f00",
            "https://b.s3/k?X-Amz-Credential=********&X-Amz-Signature=********",
        ),
        ("sqlite:////var/lib/ingestd/catalog.db", "sqlite:////var/lib/ingestd/catalog.db"),
        ("postgresql://ingest@db/x", "postgresql://ingest@db/x"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/********"),
        ("https://u:pw@h:8443/a?t=1", "https://h:8443/********"),
        ("https://h?token=1", "https://h/********"),
        ("http://h", "http://h"),
        ("http://h/", "http://h/"),
        ("no-scheme/secret", MASK),
        ("", ""),
    ],
)
def test_mask_hook_url_shows_nothing_past_the_host(url: str, masked: str) -> None:
    assert mask_hook_url(url) == masked


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdefghijkl sent", "abcdefghijkl"),
        ("headers {'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("password=hunter2 ok", "hunter2"),
        ("bad password hunter2", "hunter2"),
        ('{"secret": "zz-top"}', "zz-top"),
        ("secret_access_key=XYZ", "XYZ"),
        ("connect to postgresql://u:pw0rd@h/db failed", "pw0rd"),
        ("GET /o?X-Amz-Security-Token=tok&X-Amz-Signature=sig1", "sig1"),
        ("token=t0k3n", "t0k3n"),
        ("cannot reach postgresql://u:p@ss@db/x now", "ss@db"),
    ],
)
def test_redact_text_masks_credentials(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out and MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "key: inbox/2024/a.pdf",
        "token expired",
        "uploaded scans/a.pdf",
        "café 日本",
        "AuthorizationHeaderMalformed (region) [HTTP 400]",
        "authorization failed",
        "TypeError: password must be bytes",
    ],
)
def test_redact_text_leaves_ordinary_text_alone(text: str) -> None:
    assert redact_text(text) == text


def test_mask_settings_masks_every_credential_however_deep() -> None:
    data = {
        "catalog_url": "postgresql://u:pw1@h/d",
        "webhooks": {"url": "https://h/T/tok2", "secret": "s3", "events": ["batch_closed"]},
        "destinations": {
            "m": {
                "access_key_id": "AK4",
                "secret_access_key": "SK5",
                "endpoint_url": "https://u:pw6@s3.local",
                "ready_url": "http://g/r?token=t7",
                "ready_command": ["curl", "-H", "Authorization: Bearer tok8tok8tok8"],
                "bucket": "ingest",
            }
        },
        "inboxes": [{"name": "a", "password_env": "PW_ENV", "passphrase_env": "PP_ENV"}],
    }
    masked = mask_settings(data)
    text = repr(masked)
    for secret in ("pw1", "tok2", "'s3'", "AK4", "SK5", "pw6", "t7", "tok8"):
        assert secret not in text, secret
    assert masked["destinations"]["m"]["bucket"] == "ingest"
    assert masked["inboxes"][0] == data["inboxes"][0]  # *_env name variables, not secrets
    assert masked["webhooks"]["events"] == ["batch_closed"]


def test_scrub_url_parts_removes_fragments_a_parser_quotes() -> None:
    url = "http://hook:pw0rd99@127.0.0.1/hooks/T0K3N?token=q9q9"
    text = "nonnumeric port: 'pw0rd99@127.0.0.1' for /hooks/T0K3N?token=q9q9"
    out = scrub_url_parts(text, url)
    assert "pw0rd99" not in out and "T0K3N" not in out and "q9q9" not in out
    assert scrub_url_parts("connection refused", url) == "connection refused"
