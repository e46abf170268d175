"""Running a ManualClock-driven stream whose output is ``write_to(sink)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiostream_engine import DStream
from aiostream_engine.sinks import Sink
from aiostream_engine.testing import run_stream


async def write_batches(
    sink: Sink,
    batches: Sequence[Sequence[Any]],
    *,
    num_partitions: int = 2,
    master: str = "local",
    conf: dict[str, Any] | None = None,
    **write_options: Any,
) -> None:
    """Feed ``batches`` (batch k at time k seconds) through ``write_to(sink, ...)``;
    raises the first failed batch's error after the run."""

    def build(stream: DStream) -> DStream:
        stream.write_to(sink, **write_options)
        return stream

    await run_stream(build, batches, num_partitions=num_partitions, master=master, conf=conf)
