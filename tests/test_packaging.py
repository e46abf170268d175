"""The wheel ships sources/ and sinks/ as aiostream_engine.sources / .sinks."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_imports_connector_packages() -> None:
    import aiostream_engine.sinks
    import aiostream_engine.sources.queue

    assert Path(aiostream_engine.sources.queue.__file__).parent == ROOT / "sources"
    assert Path(aiostream_engine.sinks.__file__).parent == ROOT / "sinks"


def test_built_wheel_contains_and_imports_connector_packages(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("aiostream_engine-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aiostream_engine/sources/queue.py" in names
    assert "aiostream_engine/sinks/__init__.py" in names
    assert "aiostream_engine/executor/worker.py" in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import aiostream_engine.sources.queue as q, aiostream_engine.sinks as s; "
         "print(q.__file__); print(s.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)}, check=True,
    )
    assert all(line.startswith(str(target)) for line in probe.stdout.splitlines())
