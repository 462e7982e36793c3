"""Heavy libraries load only when a configuration needs them (peak RSS target, issue 3)."""

from __future__ import annotations

import subprocess
import sys


def test_the_daemon_does_not_load_paramiko_pypdf_or_the_postgres_dialect() -> None:
    code = (
        "import sys, ingestd.daemon, ingestd.cli, ingestd.catalog.stmts\n"
        "heavy = ['paramiko', 'pypdf', 'sqlalchemy.dialects.postgresql']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
