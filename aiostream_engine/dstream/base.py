"""DStream: a node of the streaming graph that yields one RDD per batch (or per slide).

Times are integer milliseconds inside (see ``timeutil``). A stream generates its RDD for
time t lazily, once, through ``get_or_compute``; the RDD is lineage only, so building it
costs nothing until an output operation runs it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..executor.serialization import ensure_serializable
from ..hashing import stable_hash
from ..rdd.core import RDD
from ..timeutil import require_multiple, time_ms, to_ms, to_seconds
from .functions import takes_time
from .stateful import StateOperations
from .windowed import WindowOperations

if TYPE_CHECKING:
    from ..context import StreamingContext
    from ..sinks.base import Sink
    from .state_spec import MapWithStateDStream, StateDStream

T = TypeVar("T")


class DStream(WindowOperations, StateOperations, Generic[T]):
    """A discretized stream. Subclasses implement ``compute(time_ms)``.

    ``DStream[T]`` types a stream of T records in annotations (PySpark's examples use it)."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        flatMap: Callable[..., DStream]
        mapPartitions: Callable[..., DStream]
        mapPartitionsWithIndex: Callable[..., DStream]
        reduceByKey: Callable[..., DStream]
        combineByKey: Callable[..., DStream]
        partitionBy: Callable[..., DStream]
        foreachRDD: Callable[..., None]
        mapValues: Callable[..., DStream]
        flatMapValues: Callable[..., DStream]
        keyBy: Callable[..., DStream]
        groupByKey: Callable[..., DStream]
        countByValue: Callable[..., DStream]
        saveAsTextFiles: Callable[..., None]
        saveAsObjectFiles: Callable[..., None]
        transformWith: Callable[..., DStream]
        leftOuterJoin: Callable[..., DStream]
        rightOuterJoin: Callable[..., DStream]
        fullOuterJoin: Callable[..., DStream]
        reduceByWindow: Callable[..., DStream]
        countByWindow: Callable[..., DStream]
        countByValueAndWindow: Callable[..., DStream]
        groupByKeyAndWindow: Callable[..., DStream]
        reduceByKeyAndWindow: Callable[..., DStream]
        updateStateByKey: Callable[..., StateDStream]
        mapWithState: Callable[..., MapWithStateDStream]
        slideDuration: float
    # end of PySpark's names

    def __init__(
        self,
        ssc: StreamingContext,
        dependencies: list[DStream],
        name: str,
        slide_ms: int | None = None,
    ) -> None:
        self._ssc = ssc
        self.dependencies = dependencies
        self.name = name
        self.slide_ms: int = slide_ms or (
            dependencies[0].slide_ms if dependencies else ssc.batch_ms
        )
        self._generated: dict[int, RDD] = {}
        self._zero_ms: int | None = None
        self.remember_ms = 0
        self._persist = False
        self.checkpoint_ms: int | None = None
        ssc._register_stream(self)

    # ---- graph mechanics ----------------------------------------------------------------

    @property
    def context(self) -> StreamingContext:
        """The StreamingContext the stream belongs to."""
        return self._ssc

    @property
    def slide_duration(self) -> float:
        """Seconds between the stream's RDDs (the batch interval, or a window's slide)."""
        return to_seconds(self.slide_ms)

    @property
    def parent_remember_ms(self) -> int:
        """How far back this stream reads its parents' RDDs (windows override it)."""
        return 0

    def compute(self, time_ms: int) -> RDD | None:
        """The RDD of batch ``time_ms`` (None: no RDD then); what a subclass implements."""
        raise NotImplementedError

    def initialize(self, zero_ms: int) -> None:
        """Set the batch clock's zero time on this stream and its parents (at start)."""
        if self._zero_ms is not None:
            return
        self._zero_ms = zero_ms
        for parent in self.dependencies:
            parent.initialize(zero_ms)

    def remember(self, duration_ms: int) -> None:
        """Keep generated RDDs at least ``duration_ms`` back (propagates to parents)."""
        self.remember_ms = max(self.remember_ms, duration_ms, self.slide_ms)
        for parent in self.dependencies:
            parent.remember(self.remember_ms + self.parent_remember_ms)

    def is_time_valid(self, time_ms: int) -> bool:
        """Whether the stream emits at ``time_ms``: a positive multiple of its slide after zero
        time."""
        if self._zero_ms is None:
            return False
        since = time_ms - self._zero_ms
        return since > 0 and since % self.slide_ms == 0

    def get_or_compute(self, time_ms: int) -> RDD | None:
        """The RDD of batch ``time_ms``, computed once and remembered; None when the stream
        does not emit then."""
        if time_ms in self._generated:
            return self._generated[time_ms]
        if not self.is_time_valid(time_ms):
            return None
        rdd = self.compute(time_ms)
        if rdd is not None:
            if self._persist:
                rdd.cache()
            self._generated[time_ms] = rdd
        return rdd

    def clear_metadata(self, time_ms: int) -> None:
        """Forget RDDs older than the remember duration (called after each batch)."""
        oldest = time_ms - self.remember_ms
        for t in [t for t in self._generated if t <= oldest]:
            rdd = self._generated.pop(t)
            # Only the stream that cached an RDD uncaches it: an output stream (or a union of
            # one stream) holds its parent's very RDD, which the parent may need longer (a
            # window over a cached stream). An RDD no one holds any more is freed anyway.
            if self._persist:
                rdd.unpersist()
        for parent in self.dependencies:
            parent.clear_metadata(time_ms)

    def _runner_rdd_empty(self) -> RDD:
        return self._ssc.spark_context.empty_rdd()

    # ---- building blocks ----------------------------------------------------------------

    def _check(self, func: Any, operator_name: str) -> None:
        ensure_serializable(func, f"{operator_name} on {self.name}")

    def _derive(self, operator_name: str, rdd_func: Callable[[RDD], RDD]) -> DStream:
        """A stream whose RDD at t is ``rdd_func(parent RDD at t)``."""
        from .transformed import TransformedDStream

        return TransformedDStream(self._ssc, [self], operator_name, lambda rdds, _t: rdd_func(rdds[0]))

    # ---- narrow transformations -------------------------------------------------------

    def map(self, f: Callable[[Any], Any], preserves_partitioning: bool = False) -> DStream:
        """``f(record)`` for every record of every batch."""
        self._check(f, "map")
        return self._derive("map", lambda rdd: rdd.map(f))

    def flat_map(self, f: Callable[[Any], Iterable[Any]], preserves_partitioning: bool = False) -> DStream:
        """Every item of ``f(record)`` for every record."""
        self._check(f, "flat_map")
        return self._derive("flat_map", lambda rdd: rdd.flat_map(f))

    def filter(self, f: Callable[[Any], bool]) -> DStream:
        """The records for which ``f(record)`` is true."""
        self._check(f, "filter")
        return self._derive("filter", lambda rdd: rdd.filter(f))

    def map_partitions(
        self, f: Callable[[Iterator[Any]], Iterable[Any]], preserves_partitioning: bool = False
    ) -> DStream:
        """``f(records)`` -> records, per partition of every batch."""
        self._check(f, "map_partitions")
        return self._derive("map_partitions", lambda rdd: rdd.map_partitions(f))

    def map_partitions_with_index(
        self, f: Callable[[int, Iterator[Any]], Iterable[Any]], preserves_partitioning: bool = False
    ) -> DStream:
        """``f(partition index, records)`` -> records, per partition."""
        self._check(f, "map_partitions_with_index")
        return self._derive("map_partitions_with_index", lambda rdd: rdd.map_partitions_with_index(f))

    def map_values(self, f: Callable[[Any], Any]) -> DStream:
        """``(key, f(value))`` for every (key, value) record."""
        self._check(f, "map_values")
        return self._derive("map_values", lambda rdd: rdd.map_values(f))

    def flat_map_values(self, f: Callable[[Any], Iterable[Any]]) -> DStream:
        """``(key, item)`` for every item of ``f(value)``."""
        self._check(f, "flat_map_values")
        return self._derive("flat_map_values", lambda rdd: rdd.flat_map_values(f))

    def glom(self) -> DStream:
        """One list per partition of every batch."""
        return self._derive("glom", lambda rdd: rdd.glom())

    def key_by(self, f: Callable[[Any], Any]) -> DStream:
        """``(f(record), record)`` for every record."""
        self._check(f, "key_by")
        return self._derive("key_by", lambda rdd: rdd.key_by(f))

    # ---- per-batch aggregations ---------------------------------------------------------

    def reduce(self, f: Callable[[Any, Any], Any]) -> DStream:
        """One record per batch: the batch's records reduced with ``f`` (none if empty)."""
        self._check(f, "reduce")
        return self.map(lambda x: (None, x)).reduce_by_key(f, 1).map(operator.itemgetter(1))

    def count(self) -> DStream:
        """One record per batch: its number of records (0 for an empty batch)."""
        return self._derive(
            "count",
            lambda rdd: rdd.map_partitions(lambda it: [sum(1 for _ in it)])
            .union(rdd._runner.from_partitions([[0]]))
            .map(lambda c: (None, c))
            .reduce_by_key(operator.add, 1)
            .map(operator.itemgetter(1)),
        )

    def count_by_value(self, num_partitions: int | None = None) -> DStream:
        """(record, count) of every distinct record of every batch."""
        return self.map(lambda x: (x, 1)).reduce_by_key(operator.add, num_partitions)

    def reduce_by_key(
        self, func: Callable[[Any, Any], Any], num_partitions: int | None = None
    ) -> DStream:
        """Per batch and key, the values reduced with ``func``."""
        self._check(func, "reduce_by_key")
        return self._derive("reduce_by_key", lambda rdd: rdd.reduce_by_key(func, num_partitions))

    def combine_by_key(
        self,
        create_combiner: Callable[[Any], Any],
        merge_value: Callable[[Any, Any], Any],
        merge_combiners: Callable[[Any, Any], Any],
        num_partitions: int | None = None,
    ) -> DStream:
        """Per batch and key, values combined as ``RDD.combine_by_key`` does."""
        self._check((create_combiner, merge_value, merge_combiners), "combine_by_key")
        return self._derive(
            "combine_by_key",
            lambda rdd: rdd.combine_by_key(
                create_combiner, merge_value, merge_combiners, num_partitions
            ),
        )

    def group_by_key(self, num_partitions: int | None = None) -> DStream:
        """Per batch, (key, list of its values)."""
        return self._derive("group_by_key", lambda rdd: rdd.group_by_key(num_partitions))

    def partition_by(
        self, num_partitions: int, partition_func: Callable[[Any], int] = stable_hash
    ) -> DStream:
        """Every batch hash partitioned by key into ``num_partitions``."""
        self._check(partition_func, "partition_by")
        return self._derive(
            "partition_by", lambda rdd: rdd.partition_by(num_partitions, partition_func)
        )

    def repartition(self, num_partitions: int) -> DStream:
        """Every batch spread evenly over ``num_partitions`` partitions."""
        return self._derive("repartition", lambda rdd: rdd.repartition(num_partitions))

    # ---- arbitrary RDD functions ----------------------------------------------------------

    def transform(self, func: Callable[..., RDD]) -> DStream:
        """``func(rdd)`` or ``func(time, rdd)`` -> RDD, run on the driver each batch."""
        from .transformed import TransformedDStream

        with_time = takes_time(func, 1)
        return TransformedDStream(
            self._ssc,
            [self],
            "transform",
            lambda rdds, t: func(self._ssc._batch_time(t), rdds[0]) if with_time else func(rdds[0]),
        )

    def transform_with(
        self, func: Callable[..., RDD], other: DStream, keep_serializer: bool = False
    ) -> DStream:
        """``func(rdd_a, rdd_b)`` or ``func(time, rdd_a, rdd_b)`` -> RDD."""
        from .transformed import TransformedDStream

        self._require_same_slide(other, "transform_with")
        with_time = takes_time(func, 2)
        return TransformedDStream(
            self._ssc,
            [self, other],
            "transform_with",
            lambda rdds, t: func(self._ssc._batch_time(t), *rdds) if with_time else func(*rdds),
        )

    def _require_same_slide(self, other: DStream, what: str) -> None:
        if other.slide_ms != self.slide_ms:
            raise ValueError(
                f"{what}: the streams slide differently ({self.slide_duration:g} s and "
                f"{other.slide_duration:g} s)"
            )

    def _binary(self, other: DStream, what: str, func: Callable[[RDD, RDD], RDD]) -> DStream:
        from .transformed import TransformedDStream

        self._require_same_slide(other, what)
        return TransformedDStream(self._ssc, [self, other], what, lambda rdds, _t: func(*rdds))

    def union(self, other: DStream) -> DStream:
        """The records of both streams, batch by batch (same slide)."""
        from .transformed import UnionDStream

        self._require_same_slide(other, "union")
        return UnionDStream(self._ssc, [self, other])

    def cogroup(self, other: DStream, num_partitions: int | None = None) -> DStream:
        """Per batch, (key, (values here, values in ``other``)) for every key of either."""
        return self._binary(other, "cogroup", lambda a, b: a.cogroup(b, num_partitions=num_partitions))

    def join(self, other: DStream, num_partitions: int | None = None) -> DStream:
        """Per batch, (key, (v, w)) for every pair of values of a key in both streams."""
        return self._binary(other, "join", lambda a, b: a.join(b, num_partitions))

    def left_outer_join(self, other: DStream, num_partitions: int | None = None) -> DStream:
        """As ``join``, with (key, (v, None)) for keys only this stream has in the batch."""
        return self._binary(other, "left_outer_join", lambda a, b: a.left_outer_join(b, num_partitions))

    def right_outer_join(self, other: DStream, num_partitions: int | None = None) -> DStream:
        """As ``join``, with (key, (None, w)) for keys only ``other`` has."""
        return self._binary(other, "right_outer_join", lambda a, b: a.right_outer_join(b, num_partitions))

    def full_outer_join(self, other: DStream, num_partitions: int | None = None) -> DStream:
        """As ``join``, with None on the side that lacks a key."""
        return self._binary(other, "full_outer_join", lambda a, b: a.full_outer_join(b, num_partitions))

    # ---- persistence and history --------------------------------------------------------

    def cache(self) -> DStream:
        """Cache every batch's RDD (read by several outputs or windows once)."""
        self._persist = True
        return self

    def persist(self, storage_level: Any = None) -> DStream:
        """``cache()``; any ``storage_level`` is accepted."""
        return self.cache()

    def checkpoint(self, interval: float) -> DStream:
        """Checkpoint this stream's RDDs every ``interval`` seconds (used by stateful streams)."""
        interval_ms = to_ms(interval, "checkpoint interval")
        require_multiple(interval_ms, self.slide_ms, "checkpoint interval")
        self.checkpoint_ms = interval_ms
        self._persist = True
        return self

    def slice(self, begin: float | datetime, end: float | datetime) -> list[RDD]:
        """The RDDs this stream generated for times in [begin, end] that it still remembers
        (seconds, or ``datetime`` batch times as the PySpark layer hands them out)."""
        begin_ms, end_ms = time_ms(begin, "begin"), time_ms(end, "end")
        return [rdd for t, rdd in sorted(self._generated.items()) if begin_ms <= t <= end_ms]

    # ---- output operations --------------------------------------------------------------

    def foreach_rdd(self, func: Callable[..., Any]) -> None:
        """Run ``func(rdd)`` or ``func(time, rdd)`` every batch; may be a coroutine function.

        A plain function runs on a worker thread, so blocking actions (``rdd.collect()``)
        work as in PySpark; a coroutine function runs on the loop and uses ``acollect()``.
        """
        from .output import ForEachDStream

        ForEachDStream(self, func, "foreach_rdd", user_function=True)

    def pprint(self, num: int = 10) -> None:
        """Print the first ``num`` records of every batch under a time header, as PySpark does."""
        from .output import pprint_batch

        self._output(pprint_batch(num), f"pprint({num})")

    def save_as_text_files(self, prefix: str, suffix: str | None = None) -> None:
        """Write every batch as text into ``<prefix>-<batch ms>[.suffix]/part-NNNNN`` (atomic
        per batch; a re-run batch replaces its directory)."""
        from .output import save_batch

        self._output(save_batch(prefix, suffix, text=True), "save_as_text_files")

    def save_as_object_files(self, prefix: str, suffix: str | None = None) -> None:
        """Write every batch as pickled lists into ``<prefix>-<batch ms>[.suffix]/part-NNNNN``."""
        from .output import save_batch

        self._output(save_batch(prefix, suffix, text=False), "save_as_object_files")

    def write_to(
        self,
        sink: Sink,
        *,
        max_concurrency: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ) -> None:
        """Write every batch through ``sink``, one ``write_partition`` per partition.

        At most ``max_concurrency`` partition writes run at once on the event loop; a failed
        one is retried ``retries`` times after ``backoff * 2**attempt`` seconds, then the
        batch fails naming the sink, batch and partition. Defaults come from the conf keys
        ``sink_max_concurrency``, ``sink_max_retries``, ``sink_retry_backoff``. Where the
        writes run and why: ``dstream.sink_output``.
        """
        from .sink_output import SinkOutputDStream, WritePolicy

        policy = WritePolicy.from_conf(self._ssc.conf, max_concurrency, retries, backoff)
        SinkOutputDStream(self, sink, policy)

    def _output(self, func: Callable[..., Any], name: str) -> None:
        from .output import ForEachDStream

        ForEachDStream(self, func, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} slide={self.slide_duration:g}s>"
