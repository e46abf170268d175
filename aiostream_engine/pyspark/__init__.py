"""PySpark's import paths over aiostream-engine.

Porting a PySpark DStream program is replacing ``pyspark`` by ``aiostream_engine.pyspark``
in its imports::

    from aiostream_engine.pyspark import SparkContext
    from aiostream_engine.pyspark.streaming import StreamingContext

    sc = SparkContext("local[2]", "NetworkWordCount")
    ssc = StreamingContext(sc, 1)

What is the same, what differs and why: README, "PySpark programs".
"""

from __future__ import annotations

from ..rdd.stats import StatCounter
from .accumulators import Accumulator, AccumulatorParam
from .broadcast import Broadcast
from .conf import SparkConf
from .context import SparkContext
from .rdd import RDD
from .storagelevel import StorageLevel

__all__ = [
    "RDD",
    "Accumulator",
    "AccumulatorParam",
    "Broadcast",
    "SparkConf",
    "SparkContext",
    "StatCounter",
    "StorageLevel",
]
