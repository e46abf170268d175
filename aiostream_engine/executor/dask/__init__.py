"""The Dask backend: ``dask://host:port`` (a running Dask scheduler) and ``dask-local[N]``
(a LocalCluster of N worker processes started with the context). See ``backend``."""

from .backend import DaskBackend

__all__ = ["DaskBackend"]
