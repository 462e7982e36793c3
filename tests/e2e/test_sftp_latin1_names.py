"""A remote file whose name is not UTF-8 (Latin-1 bytes, as an old Windows partner sends them) on a
real sshd goes through the real ingestd process like any other (issue 21, item 2, over SFTP; a
UTF-8 name with ESC, a newline and U+202E too): pulled, uploaded to a real S3 server under its
percent-encoded key with its exact bytes, archived (or rejected with its reason) on the server
under its exact byte name, shown escaped by the CLI and exact in ``files --json``
(docs/ARCHITECTURE.md, "File names")."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, bucket_objects, empty_bucket, s3_destination_toml
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshdServer

pytestmark = pytest.mark.e2e

GOOD = b"caf\xe9-r\xe9sum\xe9.pdf"
BAD = b"d\xe9fectueux.pdf"
FOLDER = b"r\xe9pertoire"
HOSTILE = "evil\x1b[31m\nred\u202e.pdf".encode()  # UTF-8, with ESC, a newline and U+202E


def _put(server: SshdServer, folder: Path, raw: bytes, content: bytes) -> None:
    """Write a file under its byte name straight into the chroot, owned by the SFTP user (as
    if the partner had uploaded it; the OpenSSH client cannot type such a name)."""
    path = os.path.join(os.fsencode(folder), raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content)
    for made in (path, os.path.dirname(path)):
        os.chown(made, server.user.pw_uid, server.user.pw_gid)


def test_a_latin1_remote_name_is_pulled_uploaded_archived_and_shown_escaped(
    sshd_server: SshdServer, moto_s3: S3Server, tmp_path: Path
) -> None:
    local, remote = sshd_server.make_dir("e2e-latin1")
    out = local / "out"
    sshd_server.make_dir("e2e-latin1/out")
    content = samples.write_sample("pdf", tmp_path, seed=21).read_bytes()
    nested = content + b"\n% another version\n"  # not a duplicate of the first
    _put(sshd_server, out, GOOD, content)
    _put(sshd_server, out, FOLDER + b"/" + GOOD, nested)
    _put(sshd_server, out, BAD, b"%PDF-1.4 cut short")
    third = content + b"\n% a third one\n"
    _put(sshd_server, out, HOSTILE, third)
    empty_bucket(moto_s3)
    inbox = (
        '[[inboxes]]\nname = "partner"\ntype = "sftp"\ndestination = "main"\n'
        f'host = "{sshd_server.host}"\nport = {sshd_server.port}\n'
        f'username = "{sshd_server.username}"\nprivate_key = "{sshd_server.private_key}"\n'
        f'known_hosts = "{sshd_server.known_hosts}"\nremote_path = "{remote}/out"\n'
        f'archive_path = "{remote}/archive"\nrejected_path = "{remote}/rejected"\n'
        "poll_seconds = 0.5\nsettle_seconds = 0.5\n"
        'on_success = "archive"\non_reject = "quarantine"\n'
    )
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(moto_s3, key_template="{inbox}/{relpath}"),
        inboxes=[inbox],
    )
    archived = os.path.join(os.fsencode(local), b"archive", GOOD)
    archived_nested = os.path.join(os.fsencode(local), b"archive", FOLDER, GOOD)
    archived_hostile = os.path.join(os.fsencode(local), b"archive", HOSTILE)
    rejected = os.path.join(os.fsencode(local), b"rejected")
    with daemon:
        daemon.start()
        counts = daemon.wait_idle(expected_total=4, timeout=90)
        daemon.wait_for(
            lambda: (
                os.path.exists(archived)
                and os.path.exists(archived_nested)
                and os.path.exists(archived_hostile)
                and os.path.exists(os.path.join(rejected, BAD + b".reason.json"))
            ),
            timeout=60,
            what="the remote post-actions on the exact byte names",
        )
        listing = daemon.cli("files").stdout
        rows = daemon.files()
        report = daemon.cli("report").stdout
        log = daemon.log.read_bytes()
    assert counts["uploaded"] == 3 and counts["rejected"] == 1, counts

    # Uploaded under the percent-encoded key, with the exact bytes; the key gives back the name.
    objects = bucket_objects(moto_s3)
    by_name = {urllib.parse.unquote_to_bytes(key): obj for key, obj in objects.items()}
    assert len(objects) == 3, objects
    top, inner = b"partner/" + GOOD, b"partner/" + FOLDER + b"/" + GOOD
    assert {top, inner} <= set(by_name), sorted(objects)
    assert by_name[top]["sha256"] == hashlib.sha256(content).hexdigest()
    assert by_name[inner]["sha256"] == hashlib.sha256(nested).hexdigest()
    assert {
        "partner/caf%E9-r%E9sum%E9.pdf",
        "partner/r%E9pertoire/caf%E9-r%E9sum%E9.pdf",
    } <= set(objects)
    # (the third key is the hostile name sanitised: no control characters in a key)
    assert hashlib.sha256(third).hexdigest() in {o["sha256"] for o in objects.values()}

    # The remote post-actions moved the exact remote files: nothing left, nothing renamed.
    assert os.listdir(os.fsencode(out)) == [FOLDER]
    assert os.listdir(os.path.join(os.fsencode(out), FOLDER)) == []
    with open(archived, "rb") as fh:
        assert fh.read() == content
    with open(archived_nested, "rb") as fh:
        assert fh.read() == nested
    with open(archived_hostile, "rb") as fh:
        assert fh.read() == third
    assert sorted(os.listdir(rejected)) == [BAD, BAD + b".reason.json"]
    with open(os.path.join(rejected, BAD + b".reason.json"), "rb") as fh:
        reason = json.load(fh)
    assert reason["codes"] == ["truncated"] and os.fsencode(reason["path"]) == BAD

    # People see the names escaped; JSON carries the exact bytes beside the shown text.
    assert "caf\\xe9-r\\xe9sum\\xe9.pdf" in listing and "d\\xe9fectueux.pdf" in listing
    assert "\ufffd" not in listing and "\ufffd" not in report
    assert "evil\\x1b[31m\\nred\\u202e.pdf" in listing
    assert not any(c in listing + report for c in "\x1b\u202e")
    assert "d\\xe9fectueux.pdf" in report
    exact = {
        base64.b64decode(r["path_b64"]) if "path_b64" in r else r["path"].encode(): r["state"]
        for r in rows
    }
    assert exact == {
        GOOD: "uploaded",
        FOLDER + b"/" + GOOD: "uploaded",
        HOSTILE: "uploaded",
        BAD: "rejected",
    }
    # The log shows the bytes escaped, never raw: no Latin-1 byte, no ESC, no U+202E.
    assert b"\xe9" not in log and b"\x1b" not in log and "\u202e".encode() not in log
    assert b"UnicodeDecodeError" not in log and b"Traceback" not in log
