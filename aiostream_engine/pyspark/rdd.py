"""PySpark's ``pyspark.rdd``: the engine's RDD, with PySpark's method names."""

from __future__ import annotations

from ..rdd.core import RDD

__all__ = ["RDD"]
