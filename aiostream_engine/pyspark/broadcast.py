"""PySpark's ``pyspark.broadcast``: ``sc.broadcast(value)`` returns a ``Broadcast``."""

from __future__ import annotations

from ..variables.broadcast import Broadcast

__all__ = ["Broadcast"]
