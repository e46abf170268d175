"""The README's configuration table is the one scripts/conf_table.py generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_table_is_current() -> None:
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "conf_table.py")],
        capture_output=True, text=True, check=True,
    ).stdout
    readme = (ROOT / "README.md").read_text()
    assert table.strip() in readme, (
        "README.md's configuration table is stale: paste the output of "
        "`python scripts/conf_table.py` into its Configuration section"
    )
