"""The .deb as a sysadmin meets it: built by scripts/package, checked by lintian, installed
with dpkg on this machine, run, and purged leaving only the state directory.

Installing a package changes the machine, so this runs only as root (CI runs as root) and
skips elsewhere, except under CI=true where a skip would hide a broken package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNED = (
    Path("/opt/ingestd"),
    Path("/usr/bin/ingestd"),
    Path("/usr/lib/systemd/system/ingestd.service"),
    Path("/usr/lib/sysusers.d/ingestd.conf"),
    Path("/usr/lib/tmpfiles.d/ingestd.conf"),
    Path("/etc/ingestd"),
    Path("/usr/share/man/man1/ingestd.1.gz"),
    Path("/usr/share/bash-completion/completions/ingestd"),
    Path("/usr/share/zsh/vendor-completions/_ingestd"),
    Path("/usr/share/doc/ingestd"),
)


def need(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the package must be tested)")
    pytest.skip(why)


def sh(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], check=check, capture_output=True, text=True, timeout=600
    )


def purge() -> None:
    sh("dpkg", "--purge", "ingestd", check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    need(os.geteuid() == 0, "installing a .deb needs root")
    need(shutil.which("dpkg-deb") is not None, "dpkg-deb is not installed")
    out = tmp_path_factory.mktemp("dist")
    result = sh(ROOT / "scripts/package", "--out", out, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels, debs = list(out.glob("ingestd-*-py3-none-any.whl")), list(out.glob("ingestd_*.deb"))
    assert len(wheels) == 1 and len(debs) == 1, sorted(p.name for p in out.iterdir())
    yield wheels[0], debs[0]


@pytest.fixture(scope="module")
def installed(built: tuple[Path, Path]) -> Iterator[Path]:
    purge()
    state_existed = Path("/var/lib/ingestd").exists()
    result = sh("dpkg", "-i", built[1], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield built[1]
    finally:
        purge()
        if not state_existed:
            shutil.rmtree("/var/lib/ingestd", ignore_errors=True)


def test_the_wheel_carries_the_service_files_and_the_example_config(
    built: tuple[Path, Path],
) -> None:
    names = set(zipfile.ZipFile(built[0]).namelist())
    for name in (
        "ingestd/data/ingestd.toml",
        "ingestd/data/systemd/ingestd.service",
        "ingestd/data/systemd/ingestd.sysusers",
        "ingestd/data/systemd/ingestd.tmpfiles",
    ):
        assert name in names


def test_lintian_finds_no_error(built: tuple[Path, Path]) -> None:
    lintian = shutil.which("lintian")
    need(lintian is not None, "lintian is not installed")
    assert lintian is not None
    result = sh(
        lintian,
        "--fail-on",
        "error",
        "--suppress-tags",
        "bad-distribution-in-changes-file",
        built[1],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_holds_what_a_sysadmin_expects(built: tuple[Path, Path]) -> None:
    listing = sh("dpkg-deb", "--contents", built[1]).stdout
    for path in (
        "./usr/bin/ingestd -> /opt/ingestd/bin/ingestd",
        "./opt/ingestd/bin/ingestd",
        "./usr/lib/systemd/system/ingestd.service",
        "./usr/lib/sysusers.d/ingestd.conf",
        "./usr/lib/tmpfiles.d/ingestd.conf",
        "./etc/ingestd/ingestd.toml",
        "./usr/share/man/man1/ingestd.1.gz",
        "./usr/share/bash-completion/completions/ingestd",
        "./usr/share/zsh/vendor-completions/_ingestd",
        "./usr/share/doc/ingestd/copyright",
        "./usr/share/doc/ingestd/changelog.Debian.gz",
    ):
        assert path in listing, path
    control = sh("dpkg-deb", "--field", built[1], "Depends").stdout
    assert "python3 (>= 3.11)" in control
    assert sh("dpkg-deb", "--ctrl-tarfile", built[1]).returncode == 0
    conffiles = sh("dpkg-deb", "--info", built[1], "conffiles").stdout.split()
    assert conffiles == ["/etc/ingestd/ingestd.toml"]


def test_installed_it_runs_checks_its_config_and_purges_clean(installed: Path) -> None:
    unit = Path("/usr/lib/systemd/system/ingestd.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(program).is_file() and os.access(program, os.X_OK)

    version = sh("/usr/bin/ingestd", "--version")
    assert version.stdout.strip().startswith("ingestd ")
    check = sh("/usr/bin/ingestd", "config", "check", "--config", "/etc/ingestd/ingestd.toml")
    assert check.returncode == 0
    doctor = sh("/usr/bin/ingestd", "doctor", "--config", "/etc/ingestd/ingestd.toml", check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    # The account, the configuration's permissions and the example inbox are there.
    assert sh("getent", "passwd", "ingestd").returncode == 0
    toml = Path("/etc/ingestd/ingestd.toml").stat()
    assert toml.st_mode & 0o777 == 0o640
    assert Path("/var/lib/ingestd/inbox").is_dir()
    # Byte-code made at run time must not outlive the package.
    sh("/usr/bin/ingestd", "--help")

    purge()
    left = [str(p) for p in OWNED if p.exists() or p.is_symlink()]
    assert left == []
    assert Path("/var/lib/ingestd").is_dir()  # the state directory stays, as Debian expects
