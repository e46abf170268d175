"""Every test of the PySpark layer leaves no SparkContext or StreamingContext active."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext


@pytest.fixture(autouse=True)
def no_active_context_left() -> Iterator[None]:
    yield
    active = StreamingContext.getActive()
    if active is not None:
        active.stop(stopSparkContext=False)
    if SparkContext._active is not None:
        SparkContext._active.stop()


@pytest.fixture
def sc() -> Iterator[SparkContext]:
    context = SparkContext("local", "tests")
    yield context
    context.stop()
