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
_DASK_LOCAL_N = re.compile(r"^dask-local\[(\*|[1-9][0-9]*)\]$")
_DASK_URL = re.compile(r"^dask://(?P<host>\[[0-9a-fA-F:]+\]|[^:/\[\]]+):(?P<port>[0-9]{1,5})/?$")

MASTERS = "'local', 'local[N]', 'local[*]', 'dask://host:port' or 'dask-local[N]'"


def _count(match: re.Match[str]) -> int:
    count = match.group(1)
    return (os.cpu_count() or 1) if count == "*" else int(count)


def backend_for(master: str, conf: StreamingConf | None = None) -> ExecutorBackend:
    """``local``: in process; ``local[N]`` / ``local[*]``: a pool of N / all-core processes;
    ``dask://host:port``: the Dask scheduler there; ``dask-local[N]``: a Dask LocalCluster
    of N worker processes started and stopped with the context."""
    conf = conf or StreamingConf()
    if master == "local":
        return LocalBackend()
    match = _LOCAL_N.match(master)
    if match:
        return ProcessPoolBackend(
            _count(match),
            nice=conf.worker_nice,
            local_dir=conf.local_dir,
            shared_memory_dir=conf.shared_memory_dir,
            gc_threshold=conf.worker_gc_threshold,
        )
    local = _DASK_LOCAL_N.match(master)
    url = _DASK_URL.match(master)
    if local or url:
        backend_class = _dask_backend(master)
        if local:
            return backend_class(
                local_workers=_count(local),
                local_dir=conf.local_dir,
                connect_timeout=conf.dask_connect_timeout,
            )
        assert url is not None
        return backend_class(
            f"tcp://{url.group('host')}:{url.group('port')}",
            local_dir=conf.local_dir,
            connect_timeout=conf.dask_connect_timeout,
        )
    if master.startswith("dask"):
        raise ConfigurationError(
            f"unknown Dask master {master!r}: use 'dask://host:port' (a running Dask "
            "scheduler) or 'dask-local[N]' (N local worker processes)"
        )
    raise ConfigurationError(f"unknown master {master!r}: use {MASTERS}")


def _dask_backend(master: str) -> type:
    """The Dask backend class; a clear error naming the extra when Dask is missing."""
    try:
        from .dask import DaskBackend
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("dask", "distributed"):
            raise
        raise ConfigurationError(
            f"the master {master!r} needs Dask distributed, which is not installed: "
            "pip install 'aiostream-engine[dask]'"
        ) from exc
    return DaskBackend
