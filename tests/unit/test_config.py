"""Configuration: the README's full file, every error at once, env overrides, paths, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestd.config import (
    DirectoryDestinationConfig,
    S3DestinationConfig,
    archive_dir,
    env_overrides,
    load_settings,
    mask_url,
    masked_dump,
    quarantine_dir,
    resolve_config_path,
)
from ingestd.errors import ConfigError
from tests.unprivileged import run_unprivileged

# The configuration reference from README.md, verbatim in shape and values.
README_TOML = """
state_dir = "/var/lib/ingestd"
catalog_url = ""
node_name = "node-a"
http_listen = "127.0.0.1:10064"
log_format = "auto"
log_level = "info"
rescan_seconds = 60.0
stop_timeout_seconds = 20.0
batch_idle_seconds = 120.0

[queue]
cooldown_seconds = 5.0
max_attempts = 8
backoff_base_seconds = 5.0
backoff_max_seconds = 900.0
probe_max_seconds = 30.0
lease_seconds = 120.0

[destinations.main]
type = "s3"
bucket = "ingest"
prefix = ""
endpoint_url = ""
region = "us-east-1"
addressing_style = "auto"
part_size_mib = 8
part_concurrency = 4
multipart_threshold_mib = 16
checksum = "md5"
key_template = "{inbox}/{yyyy}/{mm}/{dd}/{name}"
access_key_id = ""
secret_access_key = ""
profile = ""
connect_timeout_seconds = 10.0
read_timeout_seconds = 60.0
verify_tls = true
storage_class = ""
server_side_encryption = ""
sse_kms_key_id = ""
sse_customer_key_file = ""
sse_customer_key_env = ""
tags = {}

[destinations.archive]
type = "directory"
path = "/srv/store"
key_template = "{inbox}/{relpath}"

[[inboxes]]
name = "scanner"
path = "/srv/drop/scanner"
destination = "main"
recursive = true
include = ["*"]
exclude = []
settle_seconds = 5.0
min_size_bytes = 1
max_size_mib = 100
allowed_types = []
dedup = "global"
on_success = "archive"
on_duplicate = "archive"
on_reject = "quarantine"
archive_dir = ""
quarantine_dir = ""
tags = {}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No INGESTD_ variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "ingestd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


MINIMAL = """
state_dir = "state"
[destinations.main]
type = "directory"
path = "bucket"
[[inboxes]]
name = "scans"
path = "inbox"
destination = "main"
"""


# ---------------------------------------------------------------- the README file


def test_the_readme_reference_configuration_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, README_TOML))
    assert s.state_dir == Path("/var/lib/ingestd")
    assert s.node_name == "node-a"
    assert s.queue.probe_max_seconds == 30.0
    main = s.destinations["main"]
    assert isinstance(main, S3DestinationConfig)
    assert main.bucket == "ingest" and main.part_size_mib == 8 and main.checksum == "md5"
    archive = s.destinations["archive"]
    assert isinstance(archive, DirectoryDestinationConfig)
    assert archive.path == Path("/srv/store")
    inbox = s.inbox("scanner")
    assert inbox.path == Path("/srv/drop/scanner") and inbox.destination == "main"
    assert inbox.max_size_bytes == 100 * 1024 * 1024
    assert s.effective_catalog_url == "sqlite:////var/lib/ingestd/catalog.db"


def test_blank_optional_keys_in_the_readme_mean_not_set(tmp_path: Path) -> None:
    """``archive_dir = ""`` must not archive into the working directory, and ``profile = ""`` /
    ``access_key_id = ""`` must not hand boto3 an empty profile or empty credentials."""
    s = load_settings(write(tmp_path, README_TOML))
    main = s.destinations["main"]
    assert isinstance(main, S3DestinationConfig)
    assert (main.access_key_id, main.secret_access_key, main.profile) == (None, None, None)
    inbox = s.inbox("scanner")
    assert inbox.archive_dir is None and inbox.quarantine_dir is None
    assert archive_dir(s, inbox) == Path("/var/lib/ingestd/archive/scanner")
    assert quarantine_dir(s, inbox) == Path("/var/lib/ingestd/quarantine/scanner")


def test_defaults_fill_everything_not_given(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.queue.cooldown_seconds == 5.0 and s.queue.max_attempts == 8
    inbox = s.inbox("scans")
    assert (inbox.dedup, inbox.on_success, inbox.on_reject) == ("global", "archive", "quarantine")
    with pytest.raises(KeyError):
        s.inbox("nope")


# ---------------------------------------------------------------- errors, all at once


def test_every_field_error_is_reported_at_once_with_file_and_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
log_level = "loud"
[queue]
cooldown_seconds = -1
[destinations.main]
type = "s3"
bucket = "x"
part_size_mib = 2
[[inboxes]]
name = "ok"
path = "/in"
[[inboxes]]
name = "bad name!"
path = "/in2"
destination = "main"
dedup = "sometimes"
""",
    )
    problems = problems_of(path)
    assert all(p.startswith(f"{path}: ") for p in problems), problems
    keys = [p.removeprefix(f"{path}: ").split(":")[0] for p in problems]
    assert set(keys) == {
        "log_level",
        "queue.cooldown_seconds",
        "destinations.main.bucket",
        "destinations.main.part_size_mib",
        "inboxes[0].destination",
        "inboxes[1].name",
        "inboxes[1].dedup",
    }
    assert f"{path}: inboxes[0].destination: required key is missing" in problems
    assert any("greater than or equal to 5" in p for p in problems)


def test_unknown_keys_are_errors_at_every_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace('state_dir = "state"', 'state_dir = "state"\nstate_dri = "x"')
        + 'colour = "red"\n'
        + "[queue]\ncooldown = 3\n",
    )
    problems = problems_of(path)
    unknown = "unknown key (check the spelling against the configuration reference)"
    # A close known key is offered; with none close, the reference is.
    assert f"{path}: state_dri: unknown key, did you mean 'state_dir'?" in problems
    assert f"{path}: inboxes[0].colour: {unknown}" in problems
    assert f"{path}: queue.cooldown: unknown key, did you mean 'cooldown_seconds'?" in problems


def test_unknown_destination_key_names_the_destination_without_its_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('path = "bucket"', 'path = "bucket"\nbuckett = "x"'))
    assert problems_of(path) == [
        f"{path}: destinations.main.buckett: "
        "unknown key (check the spelling against the configuration reference)"
    ]


def test_cross_field_problems_of_a_valid_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[[inboxes]]
name = "scans"
path = "other"
destination = "mian"
""",
    )
    problems = problems_of(path)
    assert problems == [
        f"{path}: inboxes[1] (scans).name: inbox name is used twice (also inboxes[0] (scans))",
        f"{path}: inboxes[1] (scans).destination: "
        "no destination named 'mian', did you mean 'main'? (known: main)",
    ]


def test_cross_field_problems_are_reported_together_with_field_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[queue]
max_attempts = 0
[destinations.main]
type = "s3"
bucket = "b"
[[inboxes]]
name = "scanner"
path = "/in"
destination = "mian"
[[inboxes]]
name = "scanner"
path = "/in2"
destination = "main"
""",
    )
    problems = problems_of(path)
    assert f"{path}: queue.max_attempts: Input should be greater than or equal to 1" in problems
    assert any(p.startswith(f"{path}: destinations.main.bucket: ") for p in problems)
    # The destination exists in the file even though it is invalid: no false "unknown" for it.
    assert problems[-2:] == [
        f"{path}: inboxes[0] (scanner).destination: "
        "no destination named 'mian', did you mean 'main'? (known: main)",
        f"{path}: inboxes[1] (scanner).name: inbox name is used twice (also inboxes[0] (scanner))",
    ]


def test_cross_checks_on_invalid_data_survive_values_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
destinations = "nope"
[[inboxes]]
name = 5
path = 3
destination = "main"
""",
    )
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: destinations: ") for p in problems)
    assert any(p.startswith(f"{path}: inboxes[0].name: ") for p in problems)
    assert f"{path}: inboxes[0].destination: no destination named 'main' (known: none defined)" in (
        problems
    )


def test_cross_checks_on_invalid_data_see_destinations_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_DESTINATIONS__ENVDEST__TYPE", "directory")
    monkeypatch.setenv("INGESTD_DESTINATIONS__ENVDEST__PATH", "/srv/env")
    path = write(
        tmp_path,
        """
log_level = "loud"
[[inboxes]]
name = "a"
path = "/in"
destination = "envdest"
""",
    )
    problems = problems_of(path)
    assert problems == [
        f"{path}: log_level: Input should be 'debug', 'info', 'warning' or 'error'",
    ]


def test_s3_cross_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[destinations.main]
type = "s3"
bucket = "bucket"
part_size_mib = 64
multipart_threshold_mib = 16
access_key_id = "AKIA"
""",
    )
    assert problems_of(path) == [
        f"{path}: destinations.main.multipart_threshold_mib: must be at least part_size_mib (64)",
        f"{path}: destinations.main: access_key_id and secret_access_key go together",
    ]


def test_bad_destination_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[destinations."bad name"]\ntype = "directory"\npath = "/x"\n')
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: destinations.bad name: name must match")


def test_archive_dir_must_not_be_the_inbox_itself(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'archive_dir = "inbox/"\nquarantine_dir = "inbox/q"\n')
    assert problems_of(path) == [
        f"{path}: inboxes[0] (scans).archive_dir: must not be the inbox folder itself"
    ]


def test_overlapping_inbox_folders_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[[inboxes]]
name = "same"
path = "inbox"
destination = "main"
[[inboxes]]
name = "nested"
path = "inbox/sub"
destination = "main"
[[inboxes]]
name = "flat-parent"
path = "flat"
destination = "main"
recursive = false
[[inboxes]]
name = "flat-child"
path = "flat/child"
destination = "main"
[[inboxes]]
name = "deep-first"
path = "tree/a/b"
destination = "main"
[[inboxes]]
name = "tree"
path = "tree"
destination = "main"
""",
    )
    assert problems_of(path) == [
        f"{path}: inboxes[1] (same).path: same folder as inboxes[0] (scans)",
        f"{path}: inboxes[2] (nested).path: inside inboxes[0] (scans), which is recursive",
        f"{path}: inboxes[2] (nested).path: inside inboxes[1] (same), which is recursive",
        f"{path}: inboxes[6] (tree).path: contains inboxes[5] (deep-first) and is recursive",
    ]


def test_bad_key_template_and_prefix_are_field_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace(
            'path = "bucket"',
            'path = "bucket"\nkey_template = "{inbox}/{nmae}"\nprefix = "' + "p" * 300 + '"',
        ),
    )
    problems = problems_of(path)
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: destinations.main.prefix: is 300 bytes")
    assert problems[1].startswith(
        f"{path}: destinations.main.key_template: unknown placeholder(s) {{nmae}}"
    )


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'state_dir = "/x"\n\n[queue\ncooldown_seconds = 1\n')
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in problem


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert problems_of(path) == [f"{path}: configuration file not found"]


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ingestd.config import ConfigError, load_settings\n"
        "try:\n    load_settings(Path(sys.argv[1]))\n"
        "except ConfigError as exc:\n    print('\\n'.join(exc.problems))\n"
    )
    problems = run_unprivileged(code, str(path)).stdout.splitlines()
    assert problems == [f"{path}: configuration file is not readable (permission denied)"]


# ---------------------------------------------------------------- environment


def test_environment_overrides_win_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL + "[queue]\ncooldown_seconds = 9\nmax_attempts = 3\n")
    monkeypatch.setenv("INGESTD_QUEUE__COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("INGESTD_STATE_DIR", "/srv/ingestd")
    monkeypatch.setenv("INGESTD_CONFIG", str(path))  # not a setting: must not be "unknown"
    s = load_settings(path)
    assert s.queue.cooldown_seconds == 0.0
    assert s.queue.max_attempts == 3, "the rest of [queue] still comes from the file"
    assert s.state_dir == Path("/srv/ingestd")
    assert s.effective_catalog_url == "sqlite:////srv/ingestd/catalog.db"


def test_env_overrides_nest_by_double_underscore_and_parse_json_tables() -> None:
    environ = {
        "INGESTD_QUEUE": '{"cooldown_seconds": 2, "max_attempts": 4}',
        "ingestd_queue__COOLDOWN_SECONDS": "0",  # names are case-insensitive; deeper wins
        "INGESTD_DESTINATIONS__MAIN__KEY_TEMPLATE": "{inbox}/{relpath}",  # not JSON: text
        "INGESTD_DESTINATIONS__MAIN__TYPE": "s3",
        "INGESTD_CONFIG": "/etc/x.toml",  # not a setting
        "INGESTD_NOT_A_SETTING__X": "1",
        "INGESTD_QUEUE____X": "1",  # an empty part names nothing
        "HOME": "/root",
    }
    assert env_overrides(environ) == {
        "queue": {"cooldown_seconds": "0", "max_attempts": 4},
        "destinations": {"main": {"key_template": "{inbox}/{relpath}", "type": "s3"}},
    }
    assert env_overrides({}) == {}


def test_a_bad_environment_value_is_reported_like_a_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_QUEUE__MAX_ATTEMPTS", "many")
    path = write(tmp_path, MINIMAL)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: queue.max_attempts: ")


def test_resolve_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config_path(Path("/x.toml")) == Path("/x.toml")
    monkeypatch.setenv("INGESTD_CONFIG", "/from/env.toml")
    assert resolve_config_path(None) == Path("/from/env.toml")
    assert resolve_config_path(Path("/x.toml")) == Path("/x.toml")
    monkeypatch.delenv("INGESTD_CONFIG")
    assert resolve_config_path(None) == Path("/etc/ingestd/ingestd.toml")


# ---------------------------------------------------------------- paths


def test_relative_paths_are_relative_to_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = MINIMAL + 'archive_dir = "../done"\nquarantine_dir = "q"\n'
    s = load_settings(write(conf_dir, text))
    assert s.state_dir == conf_dir / "state"
    dest = s.destinations["main"]
    assert isinstance(dest, DirectoryDestinationConfig)
    assert dest.path == conf_dir / "bucket"
    inbox = s.inbox("scans")
    assert inbox.path == conf_dir / "inbox"
    assert inbox.archive_dir == tmp_path / "done"
    assert inbox.quarantine_dir == conf_dir / "q"


def test_a_config_path_given_relative_still_resolves_next_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", MINIMAL)
    monkeypatch.chdir(tmp_path)
    s = load_settings(Path("etc/ingestd.toml"))
    assert s.state_dir == tmp_path / "etc" / "state"


def test_relative_paths_from_the_environment_are_left_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the file's paths are relative to the file: a variable is not written next to it."""
    monkeypatch.setenv("INGESTD_STATE_DIR", "rel/state")
    monkeypatch.setenv("INGESTD_DESTINATIONS__MAIN__PATH", "rel/bucket")
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.state_dir == Path("rel/state")
    dest = s.destinations["main"]
    assert isinstance(dest, DirectoryDestinationConfig) and dest.path == Path("rel/bucket")
    assert s.inbox("scans").path == tmp_path / "inbox", "the file's own paths still resolve"


def test_home_relative_paths_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = load_settings(write(tmp_path, MINIMAL.replace('path = "inbox"', 'path = "~/scans"')))
    assert s.inbox("scans").path == tmp_path / "home" / "scans"


# ---------------------------------------------------------------- allowed_types


def test_allowed_types_accept_aliases_and_any_case(tmp_path: Path) -> None:
    text = MINIMAL + 'allowed_types = ["PDF", "jpg", " tif ", ".docx", "jpeg"]\n'
    s = load_settings(write(tmp_path, text))
    assert s.inbox("scans").allowed_types == ("pdf", "jpeg", "tiff", "docx")


def test_unknown_allowed_types_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'allowed_types = ["pdf", "exel", "mp3"]\n')
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}: inboxes[0].allowed_types: unknown type(s) exel, mp3; known: "
    )
    assert "jpg" in problem and "pdf" in problem


# ---------------------------------------------------------------- secrets


def test_masked_dump_hides_s3_secrets(tmp_path: Path) -> None:
    text = README_TOML.replace('access_key_id = ""', 'access_key_id = "AKIAEXAMPLE"').replace(
        'secret_access_key = ""', 'secret_access_key = "s3cr3t-Value"'
    )
    s = load_settings(write(tmp_path, text))
    main = s.destinations["main"]
    assert isinstance(main, S3DestinationConfig) and main.secret_access_key is not None
    assert main.secret_access_key.get_secret_value() == "s3cr3t-Value"
    dumped = masked_dump(s)
    assert dumped["destinations"]["main"]["secret_access_key"] == "********"
    assert dumped["destinations"]["main"]["access_key_id"] == "********"
    assert "s3cr3t" not in repr(dumped) and "AKIAEXAMPLE" not in repr(dumped)
    assert dumped["destinations"]["main"]["bucket"] == "ingest"


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
            "postgresql://ingest:a/b:c@db.example:5432/ingestd",
            "postgresql://ingest:********@db.example:5432/ingestd",
        ),
        (  # libpq also takes the password as a query parameter
            "postgresql://ingest@db.example/ingestd?password=hunter2&sslmode=require",
            "postgresql://ingest@db.example/ingestd?password=********&sslmode=require",
        ),
    ],
)
def test_masked_dump_hides_catalog_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, masked: str
) -> None:
    monkeypatch.setenv("INGESTD_CATALOG_URL", url)
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.catalog_url == url
    assert masked_dump(s)["catalog_url"] == masked


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert (
        mask_url("sqlite:////var/lib/ingestd/catalog.db") == "sqlite:////var/lib/ingestd/catalog.db"
    )
    assert mask_url("postgresql://ingest@db/x") == "postgresql://ingest@db/x"
    assert mask_url("") == ""
    assert mask_url("postgresql://u:pw@h/db?sslmode=require") == (
        "postgresql://u:********@h/db?sslmode=require"
    )
