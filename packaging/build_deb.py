"""Build ingestd's .deb from its wheel with Debian's own tool (dpkg-deb).

The package holds a self-contained virtual environment under /opt/ingestd, made with Debian's
python3 and the pinned dependencies of constraints.txt, plus /usr/bin/ingestd, the systemd unit,
sysusers.d and tmpfiles.d files, /etc/ingestd/ingestd.toml as a conffile, ingestd(1), bash and
zsh completion, and /usr/share/doc/ingestd. Usage (scripts/package runs it):

    python packaging/build_deb.py --wheel dist/ingestd-X-py3-none-any.whl --out dist
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DATA = ROOT / "src" / "ingestd" / "data"
PREFIX = "/opt/ingestd"
DEBIAN_PYTHON = "/usr/bin/python3"
MAINTAINER = os.environ.get("INGESTD_DEB_MAINTAINER", "ingestd maintainers <ingestd@localhost>")
# The virtual environment holds compiled extensions (pydantic-core, Pillow, psycopg-binary,
# cryptography) built for one CPython minor version: the package is bound to Debian's.
PY_MINOR = "3.11"


def run(*argv: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def gz(src_text: str, dest: Path) -> None:
    """Debian compresses man pages and changelogs with gzip -9n (no name, no timestamp)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f,
    ):
        f.write(src_text.encode())


def install(src: Path | str, dest: Path, *, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, Path):
        shutil.copyfile(src, dest)
    else:
        dest.write_text(src)
    dest.chmod(mode)


def make_venv(stage: Path, wheel: Path) -> None:
    venv = stage / PREFIX.lstrip("/")
    run(DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv)
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "--no-compile",
        "--disable-pip-version-check",
        "-c",
        ROOT / "constraints.txt",
        f"{wheel.resolve()}[postgres]",
    )
    relocate(venv)


def relocate(venv: Path) -> None:
    """The venv was made at its staging path; make every path in it say /opt/ingestd."""
    staged = str(venv)
    for path in (venv / "bin").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if staged.encode() in data:
            path.write_bytes(data.replace(staged.encode(), PREFIX.encode()))
    # Shared objects are mapped, not executed (Debian policy 10.2: 0644).
    for lib in venv.rglob("*.so*"):
        if lib.is_file() and not lib.is_symlink():
            lib.chmod(lib.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(staged, PREFIX))
    # Where the wheel was built is no business of the installed package.
    for direct in venv.glob("lib/python*/site-packages/*.dist-info/direct_url.json"):
        direct.unlink()
        record = direct.parent / "RECORD"
        record.write_text(
            "".join(
                line
                for line in record.read_text().splitlines(keepends=True)
                if "direct_url.json" not in line
            )
        )
    leftovers = [
        str(p)
        for p in venv.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and p.suffix in {"", ".py", ".cfg", ".txt", ".sh", ".fish", ".csh"}
        and staged.encode() in p.read_bytes()
    ]
    if leftovers:
        raise SystemExit(f"staging path left in: {leftovers[:5]}")


def completions(stage: Path) -> None:
    """bash and zsh completion scripts, as typer's click writes them for this CLI."""
    venv = stage / PREFIX.lstrip("/")
    for shell, dest in (
        ("bash", "usr/share/bash-completion/completions/ingestd"),
        ("zsh", "usr/share/zsh/vendor-completions/_ingestd"),
    ):
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "_INGESTD_COMPLETE": f"source_{shell}"}
        out = run(venv / "bin" / "python", venv / "bin" / "ingestd", capture_output=True, env=env)
        if f"_INGESTD_COMPLETE=complete_{shell}" not in out.stdout:
            raise SystemExit(f"ingestd wrote no {shell} completion: {out.stdout[:200]!r}")
        install(out.stdout.lstrip("\n"), stage / dest)


def debian_changelog(version: str) -> str:
    """changelog.Debian from CHANGELOG.md's sections (Debian's format, newest first)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    entries = []
    for match in re.finditer(
        r"^## (\S+) — (\d{4}-\d{2}-\d{2})\n(.*?)(?=^## |\Z)", text, re.M | re.S
    ):
        ver, day, body = match.groups()
        when = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=dt.UTC)
        items = [" ".join(i.split()) for i in re.split(r"^\* ", body, flags=re.M)[1:]]
        lines = [f"ingestd ({ver}-1) unstable; urgency=medium", ""]
        for item in items or ["Release."]:
            lines += textwrap.wrap(item, 78, initial_indent="  * ", subsequent_indent="    ")
        lines += ["", f" -- {MAINTAINER}  {email.utils.format_datetime(when)}", ""]
        entries.append("\n".join(lines))
    if not entries or f"({version}-1)" not in entries[0]:
        raise SystemExit(f"CHANGELOG.md has no section for {version} at its top")
    return "\n".join(entries)


def copyright_file() -> str:
    licence = (ROOT / "LICENSE").read_text().split("\n", 2)[2].strip()
    body = "\n".join(f" {line}" if line else " ." for line in licence.splitlines())
    return (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: ingestd\n\n"
        "Files: *\nCopyright: 2026 The ingestd authors\nLicense: MIT\n"
        f"{body}\n\n"
        "Files: opt/ingestd/lib/*\n"
        "Copyright: their authors, as each package's dist-info states\n"
        "License: various\n"
        " The Python packages in /opt/ingestd/lib are the pinned dependencies of\n"
        " constraints.txt, each under the licence in its own .dist-info directory.\n"
    )


def package_files(stage: Path, version: str) -> None:
    systemd = DATA / "systemd"
    install(systemd / "ingestd.service", stage / "usr/lib/systemd/system/ingestd.service")
    install(systemd / "ingestd.sysusers", stage / "usr/lib/sysusers.d/ingestd.conf")
    install(systemd / "ingestd.tmpfiles", stage / "usr/lib/tmpfiles.d/ingestd.conf")
    # 0644 in the package; tmpfiles.d makes it 0640 root:ingestd in postinst, before any secret
    # can have been written into it.
    install(DATA / "ingestd.toml", stage / "etc/ingestd/ingestd.toml")
    (stage / "usr/bin").mkdir(parents=True, exist_ok=True)
    os.symlink(f"{PREFIX}/bin/ingestd", stage / "usr/bin/ingestd")
    doc = stage / "usr/share/doc/ingestd"
    install(copyright_file(), doc / "copyright")
    gz(debian_changelog(version), doc / "changelog.Debian.gz")
    gz((ROOT / "CHANGELOG.md").read_text(), doc / "changelog.gz")
    gz((ROOT / "README.md").read_text(), doc / "README.md.gz")
    install(systemd / "inbox-dropin.conf.example", doc / "examples/inbox-dropin.conf.example")
    man = run(
        stage / PREFIX.lstrip("/") / "bin" / "python",
        PACKAGING / "manpage.py",
        "-",
        capture_output=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    ).stdout
    gz(man, stage / "usr/share/man/man1/ingestd.1.gz")
    completions(stage)
    lintian = PACKAGING / "debian" / "lintian-overrides"
    install(lintian, stage / "usr/share/lintian/overrides/ingestd")


def control_files(stage: Path, version: str) -> None:
    debian = stage / "DEBIAN"
    debian.mkdir()
    arch = run("dpkg", "--print-architecture", capture_output=True).stdout.strip()
    size_kib = sum(p.lstat().st_size for p in stage.rglob("*") if not p.is_dir()) // 1024
    next_minor = PY_MINOR.split(".")[0] + "." + str(int(PY_MINOR.split(".")[1]) + 1)
    install(
        f"Package: ingestd\nVersion: {version}-1\nArchitecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\nInstalled-Size: {size_kib}\n"
        f"Depends: python3 (>= {PY_MINOR}), python3 (<< {next_minor}), libc6,"
        " systemd | systemd-standalone-sysusers, systemd | systemd-standalone-tmpfiles\n"
        "Section: admin\nPriority: optional\n"
        "Description: drop-folder upload daemon: every file stored exactly once\n"
        " ingestd watches drop folders and SFTP inboxes, takes each file once it is\n"
        " completely written, validates it, fingerprints and de-duplicates it, and\n"
        " uploads it to S3 (resumable multipart) or a directory through a durable\n"
        " sequential queue, keeping every file's outcome in a catalog.\n",
        debian / "control",
    )
    install("/etc/ingestd/ingestd.toml\n", debian / "conffiles")
    for script in ("postinst", "prerm", "postrm"):
        install(PACKAGING / "debian" / script, debian / script, mode=0o755)
    sums = []
    for path in sorted(stage.rglob("*")):
        rel = path.relative_to(stage)
        if rel.parts[0] == "DEBIAN" or path.is_dir() or path.is_symlink():
            continue
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")  # noqa: S324
    install("".join(sums), debian / "md5sums")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "deb")
    args = parser.parse_args()
    version = args.wheel.name.split("-")[1]
    shutil.rmtree(args.build_dir, ignore_errors=True)
    stage = args.build_dir / "root"
    stage.mkdir(parents=True)
    os.umask(0o022)
    make_venv(stage, args.wheel)
    package_files(stage, version)
    control_files(stage, version)
    arch = (stage / "DEBIAN/control").read_text().split("Architecture: ")[1].split()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    deb = args.out / f"ingestd_{version}-1_{arch}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "-z6", "--build", stage, deb, capture_output=True)
    print(deb)


if __name__ == "__main__":
    main()
