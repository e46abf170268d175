"""The masters the engine's suites run on, batch for batch the same outputs on each.

``dask-local[2]`` here is the session's cluster of two worker processes (one cluster for
the whole session, see ``tests/dask_cluster.py``), reached through its ``dask://`` URL.
"""

from __future__ import annotations

import pytest

from tests.dask_cluster import DASK_LOCAL_2

MASTERS = ["local", "local[2]", DASK_LOCAL_2]


def resolve_master(request: pytest.FixtureRequest, name: str) -> str:
    """The master URL a test passes to StreamingContext for the master ``name``."""
    if name == DASK_LOCAL_2:
        return str(request.getfixturevalue("dask_cluster").master)
    return name
