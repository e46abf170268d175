"""What users' test suites import: a manual clock and a batch-by-batch stream runner.

``run_stream`` feeds each input one batch at a time on a ManualClock and returns what the
built stream output at every batch, with no wall-clock waits::

    async def test_word_count():
        out = await run_stream(
            lambda lines: lines.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(add),
            [["a b", "a"], ["b"]],
        )
        assert [sorted(batch) for batch in out] == [[("a", 2), ("b", 1)], [("b", 1)]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..clock import ManualClock
from ..conf import StreamingConf
from ..context import StreamingContext
from ..dstream.base import DStream
from ..scheduler.batch_info import BatchInfo

__all__ = ["ManualClock", "run_stream", "advance_batches", "collect_batches"]


async def advance_batches(ssc: StreamingContext, count: int) -> list[BatchInfo]:
    """Move a started context's ManualClock through ``count`` batches, waiting for each."""
    clock = ssc.clock
    if not isinstance(clock, ManualClock):
        raise TypeError("advance_batches needs a StreamingContext built with a ManualClock")
    infos = []
    for _ in range(count):
        time_ms = ssc._job_generator.next_batch_ms()
        clock.set_time(max(clock.now(), time_ms / 1000))
        infos.append(await ssc._job_scheduler.wait_for_batch(time_ms))
    return infos


def collect_batches(stream: DStream) -> list[tuple[float, list[Any]]]:
    """Register an output that records ``(batch time, records)`` for every batch."""
    outputs: list[tuple[float, list[Any]]] = []

    async def collect(time: float, rdd: Any) -> None:
        outputs.append((time, await rdd.acollect()))

    stream.foreach_rdd(collect)
    return outputs


async def run_stream(
    build: Callable[..., DStream],
    *inputs: Sequence[Sequence[Any]],
    num_batches: int | None = None,
    batch_interval: float = 1.0,
    master: str = "local",
    conf: StreamingConf | dict[str, Any] | None = None,
    num_partitions: int | None = None,
    checkpoint_dir: str | None = None,
) -> list[list[Any]]:
    """Run ``build(*streams)`` over per-batch inputs; return each emitted batch's records.

    Every input is a list of batches (each a list of records) fed one batch at a time.
    ``num_batches`` defaults to the longest input. Batches where the output stream emits
    nothing (a window that slides slower than the batch) add no entry. A failed batch
    raises its error after the run. Stateful and inverse-window streams need
    ``checkpoint_dir``.
    """
    clock = ManualClock(0.0)
    conf = StreamingConf.of(conf)
    if conf.ui_enabled is None:
        conf.ui_enabled = False  # a test run opens no web server unless it asks
    count = num_batches if num_batches is not None else max((len(i) for i in inputs), default=0)
    async with StreamingContext(batch_interval, master=master, conf=conf, clock=clock) as ssc:
        if checkpoint_dir is not None:
            ssc.checkpoint(checkpoint_dir)
        streams = [
            ssc.queue_stream(
                [ssc.spark_context.parallelize_once(batch, num_partitions) for batch in batches]
            )
            for batches in inputs
        ]
        outputs = collect_batches(build(*streams))
        await ssc.start()
        await advance_batches(ssc, count)
        await ssc.stop()
    if ssc.errors:
        raise ssc.errors[0]
    return [records for _, records in outputs]
