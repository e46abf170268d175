"""What the shared-memory tests look at: a local[N] context's process pool, and the files
of its shared-memory directory."""

from __future__ import annotations

import os

from aiostream_engine import StreamingContext
from aiostream_engine.executor.process_pool import ProcessPoolBackend


def pool(ssc: StreamingContext) -> ProcessPoolBackend:
    """The context's process pool (it runs on local[N])."""
    backend = ssc.spark_context.backend
    assert isinstance(backend, ProcessPoolBackend)
    return backend


def shared_files(directory: str | None) -> list[str]:
    """The files in a shared directory (not its lock file), by name."""
    assert directory is not None
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))
