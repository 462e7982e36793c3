"""``ingestd doctor`` checks against real folders, a real SQLite catalog and real S3 servers.

Tests run as root here, and root ignores permission bits. An unwritable quarantine is therefore
made by putting its path below a regular *file* (every file system refuses that, for any user),
and the permission-denied case drops to ``nobody`` with setpriv for the one check it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ingestd import doctor
from ingestd.catalog.repo import Catalog
from ingestd.config import load_settings
from ingestd.doctor import Check
from tests.e2e.harness import s3_destination_toml
from tests.servers.s3 import S3Server, free_port


def write_config(tmp_path: Path, *, destination: str | None = None, **inbox: Any) -> Path:
    """A config with one inbox (``scan``) and a directory destination, both existing."""
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "store").mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "name": "scan",
        "path": str(tmp_path / "inbox"),
        "destination": "main",
    }
    values.update(inbox)
    dest = (
        destination or f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
    )
    text = f'state_dir = "{tmp_path / "state"}"\n' + dest + "[[inboxes]]\n"
    text += "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
    path = tmp_path / "ingestd.toml"
    path.write_text(text)
    return path


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str | Path) else str(value).lower()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_healthy_setup_passes_everything(tmp_path: Path) -> None:
    checks = doctor.run_checks(write_config(tmp_path))
    names = [c.name for c in checks]
    assert names == [
        "config", "catalog", "state_dir", "inbox scan", "archive scan", "quarantine scan",
        "inotify", "destination main", "clock",
    ]  # fmt: skip
    assert [c for c in checks if not c.ok] == []
    found = by_name(checks)
    assert "no catalog yet" in found["catalog"].detail
    assert "will be created" in found["quarantine scan"].detail
    assert doctor.exit_code(checks) == 0
    assert not list((tmp_path / "store").iterdir())  # the probe file is gone again


def test_invalid_config_is_reported_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "ingestd.toml"
    path.write_text('[queue]\ncooldown_seconds = -1\n[[inboxes]]\nname = "x"\n')
    checks = doctor.run_checks(path)
    assert [c.name for c in checks] == ["config", "clock"]
    config = checks[0]
    assert not config.ok
    assert "queue.cooldown_seconds" in config.detail
    assert "inboxes[0]" in config.detail
    assert ".path: required key is missing" in config.detail
    assert config.hint
    assert doctor.exit_code(checks) == 78  # exitcodes.CONFIG: nothing else was checked


def test_missing_inbox_fails_with_hint(tmp_path: Path) -> None:
    config = write_config(tmp_path, path=str(tmp_path / "gone"))
    check = by_name(doctor.run_checks(config))["inbox scan"]
    assert not check.ok
    assert check.detail == f"{tmp_path / 'gone'} does not exist"
    assert f"mkdir -p {tmp_path / 'gone'}" in check.hint
    assert "inboxes[0].path" in check.hint


def test_inbox_that_is_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    check = doctor.check_inbox(
        0, load_settings(write_config(tmp_path, path=str(tmp_path / "afile"))).inboxes[0]
    )
    assert not check.ok
    assert check.detail == f"{tmp_path / 'afile'} is not a folder"
    assert "ReadWritePaths=" in check.hint


def test_glob_inbox_checks_every_match(tmp_path: Path) -> None:
    for user in ("alice", "bob"):
        (tmp_path / "sftp" / user / "inbox").mkdir(parents=True)
    settings = load_settings(write_config(tmp_path, path=str(tmp_path / "sftp" / "*" / "inbox")))
    check = doctor.check_inbox(0, settings.inboxes[0])
    assert check.ok, check
    assert "2 folders match" in check.detail
    empty = load_settings(write_config(tmp_path, path=str(tmp_path / "none" / "*" / "in")))
    assert doctor.check_inbox(0, empty.inboxes[0]).detail.startswith("no folder matches")


def test_unwritable_quarantine_fails_with_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where a folder should be")
    config = write_config(tmp_path, quarantine_dir=str(blocker / "quarantine"))
    check = by_name(doctor.run_checks(config))["quarantine scan"]
    assert not check.ok
    assert check.detail == f"{blocker / 'quarantine'}: {blocker} is a file, not a folder"
    assert (
        check.hint
        == f"set inboxes[0].quarantine_dir to a folder path, or move the file {blocker} away"
    )


def test_folder_without_write_permission_fails(tmp_path: Path) -> None:
    """As root, permission bits do not deny: the check then runs as ``nobody`` (setpriv)."""
    base = Path(tempfile.mkdtemp(prefix="doctor-", dir="/tmp"))  # reachable by any user
    try:
        base.chmod(0o755)
        (base / "q").mkdir(mode=0o755)
        target = base / "q" / "scanner"
        check = (
            _check_writable_as_nobody(target)
            if os.geteuid() == 0
            else (doctor.check_writable("quarantine scan", target, setting="s"))
        )
    finally:
        shutil.rmtree(base)
    assert not check.ok
    assert check.detail == f"{target}: cannot create files in {base / 'q'}: Permission denied"
    assert "make it writable for the ingestd user" in check.hint


def _check_writable_as_nobody(target: Path) -> Check:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    code = (
        "import dataclasses, json, sys; from pathlib import Path; from ingestd import doctor; "
        "c = doctor.check_writable('quarantine scan', Path(sys.argv[1]), setting='s'); "
        "print(json.dumps(dataclasses.asdict(c)))"
    )
    argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    result = subprocess.run(
        [*argv, "-c", code, str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return Check(**json.loads(result.stdout))


def test_existing_folder_gets_a_real_probe(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    check = doctor.check_writable("archive", folder, setting="x")
    assert check == Check("archive", True, f"{folder} is writable")
    assert list(folder.iterdir()) == []


def test_unused_archive_and_quarantine_are_not_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path, on_success="delete", on_duplicate="keep", on_reject="delete")
    names = [c.name for c in doctor.run_checks(config)]
    assert "archive scan" not in names
    assert "quarantine scan" not in names


def test_missing_directory_destination_fails(tmp_path: Path) -> None:
    store = tmp_path / "nowhere"
    dest = f'[destinations.main]\ntype = "directory"\npath = "{store}"\n'
    checks = doctor.run_checks(write_config(tmp_path, destination=dest))
    check = by_name(checks)["destination main"]
    assert not check.ok
    assert "does not exist" in check.detail
    assert "mkdir -p" in check.hint and f"ReadWritePaths={store}" in check.hint


# ---------------------------------------------------------------------------- catalog


def test_catalog_current_and_outdated(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    Catalog.open(settings.effective_catalog_url).close()
    check = doctor.check_catalog(settings)
    assert check.ok and "schema current" in check.detail
    with sqlite3.connect(settings.state_dir / "catalog.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000_old'")
    check = doctor.check_catalog(settings)
    assert not check.ok
    assert "schema at revision 0000_old" in check.detail
    assert "migrate" in check.hint


def test_unreachable_postgres_fails_without_showing_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://ingestd:Sekr3t@127.0.0.1:{free_port()}/ingestd"
    config = write_config(tmp_path)
    config.write_text(f'catalog_url = "{url}"\n' + config.read_text())
    check = doctor.check_catalog(load_settings(config))
    assert not check.ok
    assert "Sekr3t" not in check.detail
    assert "ingestd:********@127.0.0.1" in check.detail
    assert "database server running" in check.hint


# ---------------------------------------------------------------------------- inotify


def fake_proc(tmp_path: Path, watches: int, instances: int = 128) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(parents=True)
    (proc / "max_user_watches").write_text(f"{watches}\n")
    (proc / "max_user_instances").write_text(f"{instances}\n")
    return proc


def test_inotify_limit_too_low(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    for i in range(20):
        (tmp_path / "inbox" / f"d{i}" / "sub").mkdir(parents=True)
    check = doctor.check_inotify(settings, proc=fake_proc(tmp_path, watches=40))
    assert not check.ok
    assert check.detail == "41 folder(s) to watch, limit fs.inotify.max_user_watches=40"
    assert "fs.inotify.max_user_watches=524288" in check.hint
    assert doctor.check_inotify(settings, proc=fake_proc(tmp_path / "more", 100_000)).ok


def test_inotify_instances_too_low(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    check = doctor.check_inotify(settings, proc=fake_proc(tmp_path, 100_000, instances=1))
    assert not check.ok
    assert "max_user_instances=1" in check.detail


def test_inotify_limits_unreadable_is_not_a_failure(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    check = doctor.check_inotify(settings, proc=tmp_path / "no-proc")
    assert check.ok
    assert check.detail.startswith("limits unknown")


def test_count_dirs_skips_and_caps(tmp_path: Path) -> None:
    for name in ("a/b/c", "a/d", "skip/x/y", "e"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert doctor.count_dirs(tmp_path, skip={tmp_path / "skip"}, cap=1000) == 6
    assert doctor.count_dirs(tmp_path, skip=set(), cap=3) == 3


# ---------------------------------------------------------------------------- clock


def test_clock_before_build_date_fails() -> None:
    assert not doctor.check_clock(now=946_684_800).ok  # 2000-01-01
    assert doctor.check_clock().ok


def test_server_clock_skew() -> None:
    now = 1_800_000_000.0
    assert doctor.check_server_clock("c", formatdate(now - 30, usegmt=True), now=now).ok
    far = doctor.check_server_clock("c", formatdate(now - 900, usegmt=True), now=now)
    assert not far.ok
    assert far.detail == "local clock is 900s ahead of the server"
    assert doctor.check_server_clock("c", None, now=now).ok


# ---------------------------------------------------------------------------- S3


def s3_config(tmp_path: Path, server: S3Server, **values: Any) -> Path:
    return write_config(tmp_path, destination=s3_destination_toml(server, **values))


def test_s3_destination_passes(tmp_path: Path, s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    checks = doctor.run_checks(s3_config(tmp_path, s3_server, bucket=bucket, prefix="in"))
    found = by_name(checks)
    for name in ("destination main", "destination main write", "destination main multipart",
                 "clock vs main"):  # fmt: skip
        assert found[name].ok, found[name]
    assert "put and delete of in/.ingestd-doctor-" in found["destination main write"].detail
    leftovers = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert leftovers == []


def test_wrong_bucket_fails_with_hint(tmp_path: Path, s3_server: S3Server) -> None:
    checks = doctor.run_checks(s3_config(tmp_path, s3_server, bucket="no-such-bucket-here"))
    check = by_name(checks)["destination main"]
    assert not check.ok
    assert "NoSuchBucket" in check.detail
    assert check.hint == (
        f"bucket 'no-such-bucket-here' does not exist at {s3_server.endpoint_url}: create it, "
        "or fix destinations.main.bucket"
    )
    assert "destination main write" not in by_name(checks)  # nothing more to learn


def test_wrong_credentials_fail_with_hint(tmp_path: Path, s3_server: S3Server) -> None:
    config = s3_config(tmp_path, s3_server, secret_access_key="wrong-secret")
    check = by_name(doctor.run_checks(config))["destination main"]
    assert not check.ok
    assert "access_key_id/secret_access_key" in check.hint


def test_unreachable_endpoint_fails_with_hint(tmp_path: Path, moto_s3: S3Server) -> None:
    config = s3_config(tmp_path, moto_s3, endpoint=f"http://127.0.0.1:{free_port()}")
    check = by_name(doctor.run_checks(config))["destination main"]
    assert not check.ok
    assert "endpoint_url right and reachable" in check.hint


# ---------------------------------------------------------------------------- render


def test_render_shows_failures_and_hints_verbatim() -> None:
    checks = [
        Check("config", True, "ok"),
        Check("inbox scan", False, "inboxes[0] (scan): [bold] is literal", "mkdir -p /srv/x"),
    ]
    console = Console(record=True, width=200)
    console.print(doctor.render(checks))
    text = console.export_text()
    assert "pass" in text and "FAIL" in text
    assert "inboxes[0] (scan): [bold] is literal" in text
    assert "mkdir -p /srv/x" in text


def test_inbox_that_keeps_everything_needs_only_read_access(tmp_path: Path) -> None:
    config = write_config(tmp_path, on_success="keep", on_duplicate="keep", on_reject="keep")
    check = doctor.check_inbox(0, load_settings(config).inboxes[0])
    assert check == Check("inbox scan", True, f"{tmp_path / 'inbox'}: readable")
