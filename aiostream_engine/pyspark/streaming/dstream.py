"""PySpark's ``pyspark.streaming.dstream``: the engine's DStream, with PySpark's names."""

from __future__ import annotations

from ...dstream.base import DStream

__all__ = ["DStream"]
