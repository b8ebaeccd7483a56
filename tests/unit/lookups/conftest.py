"""A rules directory with a lookup hierarchy: host -> role -> dc -> common."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

HIERARCHY = """\
levels:
  - host/{{ subject }}
  - name: role
    path: role/{{ tags.role }}
  - dc/{{ tags.dc }}
  - common
"""

DATA = {
    "common.yaml": """\
        thresholds:
          load: 10
          disk: 90
        admins: [ops@example.org]
        owner: {team: ops, pager: ops-pager}
        """,
    "role/db.yaml": """\
        thresholds:
          load: 4
        admins: [dba@example.org, ops@example.org]
        owner: {team: dba}
        """,
    "dc/fra.yaml": """\
        thresholds:
          disk: 80
        admins: fra-oncall@example.org
        """,
    "host/web1.json": '{"thresholds": {"load": 20}}',
}


def write(directory: Path, relative: str, text: str) -> Path:
    """Write `text` (dedented) to directory/relative, creating folders."""
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A rules directory with hierarchy.yaml and data/ (no rule files yet)."""
    write(tmp_path, "hierarchy.yaml", HIERARCHY)
    for name, text in DATA.items():
        write(tmp_path, f"data/{name}", text)
    return tmp_path
