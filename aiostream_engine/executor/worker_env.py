"""The environment of worker processes this machine starts (local[N], dask-local[N])."""

from __future__ import annotations

import os
import sys


def driver_path() -> str:
    """The driver's import path, so a worker can import what cloudpickle pickled by
    reference (functions of modules the driver found through sys.path, e.g. test modules
    that pytest put on it, or a script's sibling modules when run from elsewhere)."""
    return os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)


def worker_hash_seed() -> str:
    """One str/bytes hash seed for every worker, as PySpark does for its executors.

    ``stable_hash`` covers str, bytes, numbers and tuples; other keys (dates, enums,
    frozen dataclasses) fall back to ``hash``, which is salted per process: with a seed
    per worker, equal keys from two map tasks would land in different reduce partitions.
    """
    seed = os.environ.get("PYTHONHASHSEED", "")
    return seed if seed.isdigit() else "0"


def worker_environment() -> dict[str, str]:
    """This process's environment with the driver's import path and the shared hash seed."""
    return {**os.environ, "PYTHONPATH": driver_path(), "PYTHONHASHSEED": worker_hash_seed()}
