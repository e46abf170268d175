"""queue_stream: batches given up front (tests, replays, ported PySpark examples)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiostream_engine.dstream.input import InputDStream
from aiostream_engine.rdd.core import RDD, ParallelCollectionRDD

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext


class QueueInputDStream(InputDStream):
    """Each batch takes the next item (or, with ``one_at_a_time=False``, all of them).

    Items may be lists (split over the default parallelism) or RDDs.
    Items can be appended to ``queue`` while running. Like Spark's, the queue is consumed
    as batches are generated and cannot be replayed after a restart.
    """

    def __init__(
        self,
        ssc: StreamingContext,
        items: Iterable[RDD | Iterable[Any]],
        one_at_a_time: bool,
        default: RDD | Iterable[Any] | None,
    ) -> None:
        super().__init__(ssc, "queue_stream")
        self.queue: deque[RDD | Iterable[Any]] = deque(items)
        self._one_at_a_time = one_at_a_time
        self._default = default

    def _as_rdd(self, item: RDD | Iterable[Any]) -> RDD:
        if isinstance(item, RDD):
            return item
        return self._ssc.spark_context.parallelize(item)

    def compute(self, time_ms: int) -> RDD | None:
        if self.queue:
            if self._one_at_a_time:
                rdd = self._as_rdd(self.queue.popleft())
            else:
                rdds = [self._as_rdd(item) for item in self.queue]
                self.queue.clear()
                rdd = rdds[0]
                for other in rdds[1:]:
                    rdd = rdd.union(other)
        elif self._default is not None:
            rdd = self._as_rdd(self._default)
        else:
            rdd = self._ssc.spark_context.empty_rdd()
        if isinstance(rdd, ParallelCollectionRDD):
            self._records[time_ms] = sum(len(p) for p in rdd.partitions)
        return rdd
