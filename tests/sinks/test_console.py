"""ConsoleSink prints each partition as one block."""

from __future__ import annotations

import io

import pytest

from aiostream_engine.dstream.output import format_batch_time
from aiostream_engine.sinks import ConsoleSink
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio


async def test_prints_each_non_empty_partition_with_its_batch_and_index() -> None:
    out = io.StringIO()
    await write_batches(ConsoleSink(out), [[1, 2, 3], [4]], max_concurrency=1)
    first, second = format_batch_time(1.0), format_batch_time(2.0)
    assert out.getvalue() == (
        f"--- Time: {first} partition 0 ---\n1\n2\n"
        f"--- Time: {first} partition 1 ---\n3\n"
        f"--- Time: {second} partition 0 ---\n4\n"
    )
