"""test_names' hostile names, served by a real sshd to an SFTP inbox (``type = "sftp"``):
control characters, escape sequences, bidi controls, newlines, long names, normalisation twins,
bytes that are not UTF-8 and hostile folder names in the remote listing. Each one is pulled,
cataloged under its exact name and stored or rejected (or left on the server when a built-in
exclude names it), and its remote post-action moves exactly that file: into archive_path, or
into rejected_path beside its reason, under its exact byte name (docs/ARCHITECTURE.md, "File
names")."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from pathlib import Path

import pytest

from ingestd.sources.filters import PathFilter
from tests.e2e.harness import Ingestd, bucket_objects, s3_destination_toml
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshdServer
from tests.torture.conftest import Torture
from tests.torture.test_names import PREFIX, hostile_dir, hostile_name, inside, is_utf8

pytestmark = pytest.mark.e2e


def sha256_of(root: bytes, relpath: str) -> str:
    with open(os.path.join(root, os.fsencode(relpath)), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def owned_by(server: SshdServer, path: bytes) -> None:
    os.chown(path, server.user.pw_uid, server.user.pw_gid)


def test_hostile_names_over_sftp(
    tmp_path: Path, sshd_server: SshdServer, moto_s3: S3Server, torture: Torture
) -> None:
    count = torture.scale(120, 500)
    rng = random.Random(count + 1)
    local, remote = sshd_server.make_dir(f"torture-names-{count}-{os.getpid()}")
    out = os.path.join(os.fsencode(local), b"out")
    os.mkdir(out)
    owned_by(sshd_server, out)
    names: dict[str, str] = {}  # relpath as the catalog holds it (fsdecoded) -> sha256
    for i in range(count):
        rel = hostile_name(rng, i)
        if rng.random() < 0.1:
            folder = hostile_dir(rng)
            if not os.path.isdir(os.path.join(out, folder)):
                os.mkdir(os.path.join(out, folder))
                owned_by(sshd_server, os.path.join(out, folder))
            rel = folder + b"/" + rel
        body = f"hostile remote name number {i}\n".encode()
        with open(os.path.join(out, rel), "wb") as fh:
            fh.write(body)
        owned_by(sshd_server, os.path.join(out, rel))
        names[os.fsdecode(rel)] = hashlib.sha256(body).hexdigest()
    excluded = {n for n in names if not PathFilter().accepts_file(n)}
    expected = set(names) - excluded
    not_utf8 = {n for n in expected if not is_utf8(n)}
    bucket = moto_s3.create_bucket()
    inbox = (
        '[[inboxes]]\nname = "partner"\ntype = "sftp"\ndestination = "main"\n'
        f'host = "{sshd_server.host}"\nport = {sshd_server.port}\n'
        f'username = "{sshd_server.username}"\nprivate_key = "{sshd_server.private_key}"\n'
        f'known_hosts = "{sshd_server.known_hosts}"\nremote_path = "{remote}/out"\n'
        f'archive_path = "{remote}/archive"\nrejected_path = "{remote}/rejected"\n'
        "poll_seconds = 0.5\nsettle_seconds = 0.3\n"
        'on_success = "archive"\non_reject = "quarantine"\n'
    )
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(moto_s3, bucket=bucket, prefix=PREFIX),
        inboxes=[inbox],
    )

    def on_server(root: bytes) -> set[str]:
        found = set()
        for folder, _dirs, files in os.walk(root):
            for name in files:
                found.add(os.fsdecode(os.path.relpath(os.path.join(folder, name), root)))
        return found

    with daemon:
        daemon.start()
        daemon.wait_idle(expected_total=len(expected), timeout=120 + count)
        daemon.wait_for(
            lambda: not (on_server(out) & expected),
            timeout=60 + count / 4,
            what="every remote file archived or rejected",
        )
        rows = daemon.files()
        alive = daemon.alive()
        daemon.stop()
    log = daemon.log.read_bytes()
    objects = bucket_objects(moto_s3, bucket)
    by_path: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        if "path_b64" in row:  # a name that is not UTF-8: exact bytes beside the shown text
            row["path"] = os.fsdecode(base64.b64decode(str(row["path_b64"])))
        by_path.setdefault(str(row["path"]), []).append(row)
    states: dict[str, int] = {}
    for row in rows:
        states[str(row["state"])] = states.get(str(row["state"]), 0) + 1
    missing = [n for n in expected if len(by_path.get(n, [])) != 1]
    unexpected = [p for p in by_path if p not in expected]
    uploaded = {str(r["path"]) for r in rows if r["state"] == "uploaded"}
    rejected = {str(r["path"]) for r in rows if r["state"] == "rejected"}
    keys = [str(r["key"]) for r in rows if r["state"] == "uploaded"]
    outside = [k for k in [*keys, *objects] if not inside(k, f"{PREFIX}/partner/")]
    wrong = [
        str(r["path"])
        for r in rows
        if r["state"] == "uploaded"
        and objects.get(str(r["key"]), {}).get("sha256") != names[str(r["path"])]
    ]
    archived = on_server(os.path.join(os.fsencode(local), b"archive"))
    quarantined = on_server(os.path.join(os.fsencode(local), b"rejected"))
    # Each file is at its exact name in archive_path or rejected_path (nothing renamed), with
    # its exact bytes; excluded files are left on the server, untouched.
    misplaced = sorted((uploaded - archived) | (rejected - quarantined))
    archive = os.path.join(os.fsencode(local), b"archive")
    altered = [n for n in archived & uploaded if sha256_of(archive, n) != names[n]]
    reasons = {n + ".reason.json" for n in rejected}
    strays = sorted((archived - uploaded) | (quarantined - rejected - reasons))
    left = on_server(out)
    torture.record(
        names=count,
        excluded_by_filter=len(excluded),
        not_utf8=len(not_utf8),
        # staging's hidden name .<name>.ingestd-part does not fit in 255 bytes for these
        long_names=sum(len(os.fsencode(n.rpartition("/")[2])) >= 242 for n in expected),
        **{f"state_{k}": v for k, v in sorted(states.items())},
        objects=len(objects),
        missing=len(missing),
        keys_outside_prefix=len(outside),
        wrong_bytes=len(wrong),
        remote_misplaced=len(misplaced) + len(strays),
        remote_altered=len(altered),
        left_on_server=len(left - excluded),
        crashes=0 if alive else 1,
    )
    assert alive
    assert missing == [], missing[:10]
    assert unexpected == [], unexpected[:10]
    assert outside == [], outside[:10]
    assert wrong == [], wrong[:10]
    assert len(objects) == len(uploaded)
    assert misplaced == [] and strays == [], (misplaced[:10], strays[:10])
    assert altered == [], altered[:10]
    assert left == excluded, sorted(left ^ excluded)[:10]
    assert b"Traceback" not in log and b"UnicodeDecodeError" not in log
