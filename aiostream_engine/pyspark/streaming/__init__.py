"""PySpark's ``pyspark.streaming``: ``from aiostream_engine.pyspark.streaming import
StreamingContext``."""

from __future__ import annotations

from .context import StreamingContext
from .dstream import DStream
from .listener import StreamingListener

__all__ = ["DStream", "StreamingContext", "StreamingListener"]
