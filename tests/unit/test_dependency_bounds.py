"""Every runtime dependency is bounded above (docs/SECURITY.md, "Dependencies"): an unattended
reinstall must not pull an incompatible major release."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_runtime_dependencies_have_lower_and_upper_bounds() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    unbounded = [s for s in specs if not (re.search(r">=", s) and re.search(r",\s*<", s))]
    assert specs and unbounded == []
