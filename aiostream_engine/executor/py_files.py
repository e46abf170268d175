"""User modules for the workers (Spark's ``addPyFile``): a ``.py`` file, or a ``.zip`` /
``.egg`` of packages, that the job's functions import on the workers.

On this machine (local, local[N]) workers import from the driver's path, so the file's
directory (a ``.py``) or the archive itself goes on it before the workers start. A cluster
backend ships the file to every worker instead (``executor.dask``).
"""

from __future__ import annotations

import os
import sys

SUFFIXES = (".py", ".zip", ".egg")


def checked_py_file(path: str) -> str:
    """The absolute path of an existing .py, .zip or .egg file; ValueError otherwise."""
    absolute = os.path.abspath(path)
    if not absolute.endswith(SUFFIXES):
        raise ValueError(f"add_py_file takes a .py, .zip or .egg file, got {path!r}")
    if not os.path.isfile(absolute):
        raise FileNotFoundError(f"add_py_file: no such file {path!r}")
    return absolute


def importable_here(path: str) -> None:
    """Put ``path`` (checked) where this process and the workers it starts import from."""
    entry = os.path.dirname(path) if path.endswith(".py") else path
    if entry not in sys.path:
        sys.path.insert(0, entry)
