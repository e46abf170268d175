"""Running a blocking PySpark-style context until it has produced what a test needs."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiostream_engine.pyspark.streaming import StreamingContext


def run_until(ssc: StreamingContext, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Start ``ssc``, wait (on its own clock's real time) until ``done()``, stop it
    gracefully without stopping its SparkContext. Fails if ``done`` never holds."""
    ssc.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "the stream did not produce what was expected"
            ssc.awaitTermination(0.05)
    finally:
        ssc.stop(stopSparkContext=False, stopGraceFully=True)
