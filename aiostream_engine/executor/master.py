"""Choosing an executor backend from a master URL."""

from __future__ import annotations

import os
import re

from ..conf import StreamingConf
from ..errors import ConfigurationError
from .base import ExecutorBackend
from .local import LocalBackend
from .process_pool import ProcessPoolBackend

_LOCAL_N = re.compile(r"^local\[(\*|[1-9][0-9]*)\]$")


def backend_for(master: str, conf: StreamingConf | None = None) -> ExecutorBackend:
    """``local``: in process; ``local[N]`` / ``local[*]``: a pool of N / all-core processes."""
    if master == "local":
        return LocalBackend()
    match = _LOCAL_N.match(master)
    if match:
        count = match.group(1)
        workers = (os.cpu_count() or 1) if count == "*" else int(count)
        conf = conf or StreamingConf()
        return ProcessPoolBackend(
            workers,
            nice=conf.worker_nice,
            local_dir=conf.local_dir,
            shared_memory_dir=conf.shared_memory_dir,
        )
    raise ConfigurationError(
        f"unknown master {master!r}: use 'local', 'local[N]' or 'local[*]'"
    )
