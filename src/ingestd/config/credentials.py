"""Reading systemd credentials: the ``INGESTD_*`` files in ``$CREDENTIALS_DIRECTORY``.

systemd copies each ``LoadCredential=NAME:/path`` into a private directory only this service
can read and names it in ``$CREDENTIALS_DIRECTORY`` (systemd.exec(5), "Credentials"). A file
named like a variable (``INGESTD_DESTINATIONS__MAIN__SECRET_ACCESS_KEY``) sets that key as the
variable would; the env step (``config.env``) lays them under the environment. This module only
reads the files (I/O); what they mean is decided there. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ingestd.config.pipeline import Problem

CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"
_PREFIX = "INGESTD_"


@dataclass(frozen=True)
class Credential:
    """One credential file: its name (the variable it stands for), where it is, its text."""

    name: str
    path: Path
    text: str


def credentials_dir(environ: Mapping[str, str]) -> Path | None:
    """``$CREDENTIALS_DIRECTORY`` (systemd sets it only when the unit loads credentials)."""
    value = environ.get(CREDENTIALS_VARIABLE, "")
    return Path(value) if value else None


def read_credentials(directory: Path | None) -> tuple[list[Credential], list[Problem]]:
    """Every ``INGESTD_*`` file in ``directory``, and a problem for each that cannot be read.

    One trailing newline is dropped (``echo secret > file`` and ``systemd-creds encrypt`` of such
    a file are the usual ways to write one), as ``models.named_secret`` does. Problems name the
    file, never its content.
    """
    if directory is None:
        return [], []
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return [], []  # the service stopped loading credentials: nothing to lay over the file
    except OSError as exc:
        return [], [_problem(directory, f"cannot be listed ({exc.strerror or exc})")]
    found: list[Credential] = []
    problems: list[Problem] = []
    for path in entries:
        if not path.name.upper().startswith(_PREFIX) or not path.is_file():
            continue  # other credentials (an AWS credentials file) are not settings
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            problems.append(_problem(path, "is not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(_problem(path, f"cannot be read ({exc.strerror or exc})"))
            continue
        found.append(Credential(name=path.name, path=path, text=text.removesuffix("\n")))
    return found, problems


def _problem(path: Path, what: str) -> Problem:
    return Problem((), f"credential file {path} {what}", key=f"${CREDENTIALS_VARIABLE}")
