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
    Items can be appended to ``queue`` while running. After a crash the user's setup code
    rebuilds the same queue, so a batch is replayed by the positions of the items it took.
    Batches are what the queue holds, so backpressure does not apply (no rate controller).
    """

    rate_controlled = False

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
        self._consumed = 0
        self._descriptors: dict[int, list[int]] = {}
        self._replays: dict[int, list[int]] = {}
        self._replay_items: dict[int, RDD | Iterable[Any]] = {}

    def _as_rdd(self, item: RDD | Iterable[Any]) -> RDD:
        if isinstance(item, RDD):
            return item
        return self._ssc.spark_context.parallelize_once(item)

    def compute(self, time_ms: int) -> RDD | None:
        if time_ms in self._replays:
            indices = self._replays.pop(time_ms)
            rdd = self._combine([self._replay_items.pop(i) for i in indices])
        elif self.queue:
            count = 1 if self._one_at_a_time else len(self.queue)
            indices = list(range(self._consumed, self._consumed + count))
            rdd = self._combine([self.queue.popleft() for _ in indices])
            self._consumed += count
        else:
            indices = []
            rdd = (
                self._as_rdd(self._default)
                if self._default is not None
                else self._ssc.spark_context.empty_rdd()
            )
        self._descriptors[time_ms] = indices
        if isinstance(rdd, ParallelCollectionRDD):
            self._records[time_ms] = sum(len(p) for p in rdd.partitions)
        return rdd

    def _combine(self, items: list[RDD | Iterable[Any]]) -> RDD:
        rdds = [self._as_rdd(item) for item in items]
        rdd = rdds[0]
        for other in rdds[1:]:
            rdd = rdd.union(other)
        return rdd

    # ---- recovery: items are identified by their position in the queue ---------------

    replayable = True

    def take_batch_descriptor(self, time_ms: int) -> list[int]:
        return self._descriptors.pop(time_ms, [])

    def position(self) -> int:
        return self._consumed

    def restore(self, position: int, replays: dict[int, list[int]]) -> None:
        """The queue was rebuilt by the user's setup code: skip what was consumed, keeping
        the items the replayed batches need."""
        needed = {i for indices in replays.values() for i in indices}
        for index in range(min(position, len(self.queue))):
            item = self.queue.popleft()
            if index in needed:
                self._replay_items[index] = item
        self._consumed = position
        self._replays = {t: list(indices) for t, indices in replays.items() if indices}
