"""Heavy libraries load only when a configuration needs them (peak RSS target, issue 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ingestd.catalog.repo import Catalog


def test_the_daemon_does_not_load_paramiko_pypdf_or_the_postgres_dialect() -> None:
    code = (
        "import sys, ingestd.daemon, ingestd.cli, ingestd.catalog.stmts\n"
        "heavy = ['paramiko', 'pypdf', 'sqlalchemy.dialects.postgresql']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_status_answers_without_importing_sqlalchemy(tmp_path: Path) -> None:
    """``ingestd status`` reads through the DBAPI reader: SQLAlchemy's import alone would
    double the command's start-up (issue 3: status within 0.3 s on 1,000,000 rows)."""
    Catalog.open(f"sqlite:///{tmp_path / 'state' / 'catalog.db'}").close()
    config = tmp_path / "ingestd.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "in"}"\ndestination = "main"\n'
    )
    # No daemon runs on this catalog: status exits 3 (exitcodes.NOT_RUNNING).
    code = (
        "import sys\n"
        "from ingestd.cli import main\n"
        f"sys.argv = ['ingestd', 'status', '--json', '--config', {str(config)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 3, exc.code\n"
        "print('loaded:', ','.join(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"counts"' in done.stdout  # it did report
    assert done.stdout.strip().splitlines()[-1] == "loaded:"


def test_opening_a_catalog_already_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    """Every daemon start but the first after an upgrade finds the schema current: Alembic
    (70 ms, 10 MB for the daemon's whole life) is imported only to migrate."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url).close()  # the first start migrates
    code = (
        "import sys\n"
        "from ingestd.catalog.repo import Catalog\n"
        f"Catalog.open({url!r}).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
