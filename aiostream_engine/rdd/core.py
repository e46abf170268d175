"""RDD: one batch's data as partitions plus lazy lineage.

Narrow operators append a ``Stage`` to their parent's task plans, so a chain of them runs
as one function per partition (one task). Wide operators cut the lineage at a shuffle: the
map side runs the parent's fused stages and splits records into buckets (combining values
per key first where the operator allows), the reduce side merges one bucket list per
partition. Actions are coroutines named with an ``a`` prefix (``acollect``); their plain
names block the calling thread and are for code that runs off the event loop (a plain
``foreach_rdd`` function, a script).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import heapq
import itertools
import operator as op
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..hashing import stable_hash
from .aggregation import (
    concat,
    group_values,
    merge_combiners_by,
    split_tagged,
)
from .fusion import RecordStep
from .tasks import (
    BlockInput,
    RecordsInput,
    ShuffleInput,
    ShuffleWrite,
    Stage,
    TaskInput,
    TaskPlan,
    record_stage,
)

if TYPE_CHECKING:
    from ..executor.block_store import BlockRef, CachedBlocks
    from ..executor.runner import TaskRunner
    from .stats import StatCounter


T = TypeVar("T")


def _first(pair: Any) -> Any:
    return pair[0]


class RDD(Generic[T]):
    """A partitioned, lazily computed collection (one batch of one DStream).

    ``RDD[T]`` types an RDD of T records in annotations (PySpark's examples use it)."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        flatMap: Callable[..., RDD]
        mapPartitions: Callable[..., RDD]
        mapPartitionsWithIndex: Callable[..., RDD]
        mapValues: Callable[..., RDD]
        flatMapValues: Callable[..., RDD]
        keyBy: Callable[..., RDD]
        reduceByKey: Callable[..., RDD]
        combineByKey: Callable[..., RDD]
        foldByKey: Callable[..., RDD]
        aggregateByKey: Callable[..., RDD]
        groupByKey: Callable[..., RDD]
        groupBy: Callable[..., RDD]
        partitionBy: Callable[..., RDD]
        leftOuterJoin: Callable[..., RDD]
        rightOuterJoin: Callable[..., RDD]
        fullOuterJoin: Callable[..., RDD]
        subtractByKey: Callable[..., RDD]
        groupWith: Callable[..., RDD]
        sortByKey: Callable[..., RDD]
        sortBy: Callable[..., RDD]
        zipWithIndex: Callable[..., RDD]
        takeSample: Callable[..., list[Any]]
        foreachPartition: Callable[..., None]
        countByValue: Callable[..., dict[Any, int]]
        countByKey: Callable[..., dict[Any, int]]
        collectAsMap: Callable[..., dict[Any, Any]]
        takeOrdered: Callable[..., list[Any]]
        isEmpty: Callable[..., bool]
        saveAsTextFile: Callable[..., None]
        getNumPartitions: Callable[..., int]
    # end of PySpark's names

    def __init__(self, runner: TaskRunner, num_partitions: int, name: str) -> None:
        self._runner = runner
        self.num_partitions = num_partitions
        self.name = name
        self._persisted = False
        self._blocks: CachedBlocks | None = None
        self._cache_lock: asyncio.Lock | None = None

    # ---- planning -----------------------------------------------------------------------

    async def _plans(self) -> list[TaskPlan]:
        """The task of each partition; computes shuffle map sides and cached parents."""
        if self._persisted:
            return [TaskPlan(BlockInput(block)) for block in await self._cached_blocks()]
        return await self._uncached_plans()

    async def _uncached_plans(self) -> list[TaskPlan]:
        raise NotImplementedError

    async def _cached_blocks(self) -> list[BlockRef]:
        """Cache this RDD (once) where its tasks run, and name its blocks.

        The tasks keep their partitions (``executor.block_store``); the driver holds only
        the refs, so caching state or a window never copies it through the driver.
        """
        self._persisted = True
        if self._cache_lock is None:
            self._cache_lock = asyncio.Lock()
        async with self._cache_lock:
            if self._blocks is None:
                self._blocks = await self._compute_blocks()
                self._forget_lineage()
            return self._blocks.refs

    async def _compute_blocks(self) -> CachedBlocks:
        return await self._runner.store(await self._uncached_plans(), self.name)

    def _forget_lineage(self) -> None:
        """Called once the RDD is cached: a subclass whose lineage would grow from batch to
        batch (state, windows) drops it here; a plain RDD keeps it."""

    async def _materialize(self) -> list[list[Any]]:
        """The partitions' records on the driver (checkpoints; rare for cached data)."""
        return await self._runner.run_tasks(await self._plans(), f"{self.name} (fetch)")

    @property
    def context(self) -> TaskRunner:
        """What runs this RDD's tasks (PySpark's ``rdd.context``): it also makes RDDs,
        broadcasts and accumulators."""
        return self._runner

    def get_num_partitions(self) -> int:
        """How many partitions the RDD has."""
        return self.num_partitions

    def __repr__(self) -> str:
        return f"<RDD {self.name} partitions={self.num_partitions}>"

    # ---- narrow operations (fused) ------------------------------------------------------

    def _pipe(self, operator: str, function: Callable[[int, Iterator[Any]], Iterable[Any]]) -> RDD:
        return PipelinedRDD(self, Stage(operator, function))

    def map_partitions_with_index(
        self, f: Callable[[int, Iterator[Any]], Iterable[Any]], preserves_partitioning: bool = False
    ) -> RDD:
        """``f(partition index, records)`` -> records, per partition (fused with neighbouring
        narrow steps into one task)."""
        return self._pipe("map_partitions_with_index", f)

    def map_partitions(
        self, f: Callable[[Iterator[Any]], Iterable[Any]], preserves_partitioning: bool = False
    ) -> RDD:
        """``f(records)`` -> records, per partition."""
        return self._pipe("map_partitions", lambda _, it: f(it))

    def _each(self, operator: str, f: Callable[..., Any] | None = None) -> RDD:
        """A per-record operator; tasks fuse runs of them into one loop (``fusion``)."""
        return PipelinedRDD(self, record_stage(RecordStep(operator, f)))

    def map(self, f: Callable[[Any], Any], preserves_partitioning: bool = False) -> RDD:
        """``f(record)`` for every record."""
        return self._each("map", f)

    def flat_map(self, f: Callable[[Any], Iterable[Any]], preserves_partitioning: bool = False) -> RDD:
        """Every item of ``f(record)`` for every record."""
        return self._each("flat_map", f)

    def filter(self, f: Callable[[Any], bool]) -> RDD:
        """The records for which ``f(record)`` is true."""
        return self._each("filter", f)

    def map_values(self, f: Callable[[Any], Any]) -> RDD:
        """``(key, f(value))`` for every (key, value) record."""
        return self._each("map_values", f)

    def flat_map_values(self, f: Callable[[Any], Iterable[Any]]) -> RDD:
        """``(key, item)`` for every item of ``f(value)`` of every (key, value) record."""
        return self._each("flat_map_values", f)

    def key_by(self, f: Callable[[Any], Any]) -> RDD:
        """``(f(record), record)`` for every record."""
        return self._each("key_by", f)

    def glom(self) -> RDD:
        """One list per partition, holding the partition's records."""
        return self._pipe("glom", lambda _, it: [list(it)])

    def keys(self) -> RDD:
        """The keys of (key, value) records."""
        return self._each("keys")

    def values(self) -> RDD:
        """The values of (key, value) records."""
        return self._each("values")

    def union(self, other: RDD) -> RDD:
        """The records of both RDDs (their partitions side by side, no shuffle)."""
        return UnionRDD([self, other])

    def cartesian(self, other: RDD) -> RDD:
        """Every pair (a, b) of a record of this RDD and one of ``other``."""
        from .pairing import CartesianRDD

        return CartesianRDD(self, other)

    def zip(self, other: RDD) -> RDD:
        """(a, b) of the i-th records of the two RDDs; both must have the same number of
        partitions and of records in each (as in Spark)."""
        from .pairing import ZippedRDD

        return ZippedRDD(self, other)

    def zip_with_index(self) -> RDD:
        """(record, index), indices counted across partitions in order (runs a job to
        count the partitions first, as Spark's)."""
        from .pairing import ZipWithIndexRDD

        return ZipWithIndexRDD(self)

    def sample(self, with_replacement: bool, fraction: float, seed: int | None = None) -> RDD:
        """A random sample: each record kept with probability ``fraction`` (without
        replacement) or repeated a Poisson(``fraction``) number of times (with); the same
        ``seed`` gives the same sample."""
        from .sampling import new_seed, sampler

        return self._pipe(
            "sample", sampler(with_replacement, fraction, new_seed() if seed is None else seed)
        )

    # ---- wide operations (shuffles) -----------------------------------------------------

    def _parallelism(self, num_partitions: int | None) -> int:
        return num_partitions or self._runner.default_parallelism

    def combine_by_key(
        self,
        create_combiner: Callable[[Any], Any],
        merge_value: Callable[[Any, Any], Any],
        merge_combiners: Callable[[Any, Any], Any],
        num_partitions: int | None = None,
        partition_func: Callable[[Any], int] = stable_hash,
    ) -> RDD:
        """Per key, values combined: ``create_combiner(v)`` for a key's first value in a
        partition, ``merge_value(c, v)`` for the next, ``merge_combiners(c1, c2)``
        across partitions; hash partitioned into ``num_partitions``."""
        n = self._parallelism(num_partitions)
        write = ShuffleWrite(n, "combine_by_key", partition_func, create_combiner, merge_value)
        return ShuffledRDD(self, write, merge_combiners_by(merge_combiners), "combine_by_key")

    def reduce_by_key(
        self,
        func: Callable[[Any, Any], Any],
        num_partitions: int | None = None,
        partition_func: Callable[[Any], int] = stable_hash,
    ) -> RDD:
        """Per key, the values reduced with ``func`` (combined on the map side first)."""
        n = self._parallelism(num_partitions)
        write = ShuffleWrite(n, "reduce_by_key", partition_func, _identity, func)
        return ShuffledRDD(self, write, merge_combiners_by(func), "reduce_by_key")

    def fold_by_key(
        self,
        zero_value: Any,
        func: Callable[[Any, Any], Any],
        num_partitions: int | None = None,
        partition_func: Callable[[Any], int] = stable_hash,
    ) -> RDD:
        """Per key, the values folded with ``func`` starting from ``zero_value``."""
        return self.combine_by_key(
            lambda v: func(zero_value, v), func, func, num_partitions, partition_func
        )

    def aggregate_by_key(
        self,
        zero_value: Any,
        seq_func: Callable[[Any, Any], Any],
        comb_func: Callable[[Any, Any], Any],
        num_partitions: int | None = None,
        partition_func: Callable[[Any], int] = stable_hash,
    ) -> RDD:
        """Per key: values folded into ``zero_value`` with ``seq_func`` within a partition,
        the partial results merged with ``comb_func``."""
        return self.combine_by_key(
            lambda v: seq_func(zero_value, v), seq_func, comb_func, num_partitions, partition_func
        )

    def group_by_key(
        self, num_partitions: int | None = None, partition_func: Callable[[Any], int] = stable_hash
    ) -> RDD:
        # Like Spark, no map-side combine: grouping into lists saves nothing.
        """(key, list of its values) per key; no map-side combine, as in Spark."""
        write = ShuffleWrite(self._parallelism(num_partitions), "group_by_key", partition_func)
        return ShuffledRDD(self, write, group_values, "group_by_key")

    def group_by(
        self,
        f: Callable[[Any], Any],
        num_partitions: int | None = None,
        partition_func: Callable[[Any], int] = stable_hash,
    ) -> RDD:
        """(key, records with that key) for the key ``f(record)``."""
        return self.key_by(f).group_by_key(num_partitions, partition_func)

    def partition_by(
        self, num_partitions: int | None, partition_func: Callable[[Any], int] = stable_hash
    ) -> RDD:
        """The records hash partitioned by key into ``num_partitions`` partitions."""
        write = ShuffleWrite(self._parallelism(num_partitions), "partition_by", partition_func)
        return ShuffledRDD(self, write, concat, "partition_by")

    def repartition(self, num_partitions: int) -> RDD:
        """The records spread evenly over ``num_partitions`` partitions (a shuffle)."""
        if num_partitions < 1:
            raise ValueError(f"repartition needs at least one partition, got {num_partitions}")
        write = ShuffleWrite(num_partitions, "repartition", by_position=True)
        return ShuffledRDD(self, write, concat, "repartition")

    def coalesce(self, num_partitions: int, shuffle: bool = False) -> RDD:
        """The records in ``num_partitions`` partitions (a shuffle here, whatever ``shuffle``
        says)."""
        return self.repartition(num_partitions)

    def distinct(self, num_partitions: int | None = None) -> RDD:
        """Each distinct record once."""
        return (
            self.map(lambda x: (x, None))
            .reduce_by_key(lambda a, _: a, num_partitions)
            .map(_first)
        )

    def cogroup(self, *others: RDD, num_partitions: int | None = None) -> RDD:
        """(key, (values of self, values of other, ...)) for every key of any side."""
        sides = (self, *others)
        tagged = UnionRDD(
            [side.map_values(_tagger(i)) for i, side in enumerate(sides)]
        )
        split = split_tagged(len(sides))
        return tagged.group_by_key(num_partitions).map_values(split)

    group_with = cogroup

    def join(self, other: RDD, num_partitions: int | None = None) -> RDD:
        """(key, (v, w)) for every pair of values of a key present in both RDDs."""
        return self.cogroup(other, num_partitions=num_partitions).flat_map_values(
            lambda vw: ((v, w) for v in vw[0] for w in vw[1])
        )

    def left_outer_join(self, other: RDD, num_partitions: int | None = None) -> RDD:
        """As ``join``, with (key, (v, None)) for keys only this RDD has."""
        return self.cogroup(other, num_partitions=num_partitions).flat_map_values(
            lambda vw: ((v, w) for v in vw[0] for w in (vw[1] or [None]))
        )

    def right_outer_join(self, other: RDD, num_partitions: int | None = None) -> RDD:
        """As ``join``, with (key, (None, w)) for keys only ``other`` has."""
        return self.cogroup(other, num_partitions=num_partitions).flat_map_values(
            lambda vw: ((v, w) for v in (vw[0] or [None]) for w in vw[1])
        )

    def full_outer_join(self, other: RDD, num_partitions: int | None = None) -> RDD:
        """As ``join``, with None on the side that lacks a key."""
        return self.cogroup(other, num_partitions=num_partitions).flat_map_values(
            lambda vw: ((v, w) for v in (vw[0] or [None]) for w in (vw[1] or [None]))
        )

    def subtract_by_key(self, other: RDD, num_partitions: int | None = None) -> RDD:
        """The (key, value) records whose key ``other`` does not have."""
        return self.cogroup(other, num_partitions=num_partitions).flat_map(
            lambda kv: ((kv[0], v) for v in kv[1][0]) if not kv[1][1] else ()
        )

    def sort_by_key(self, ascending: bool = True, num_partitions: int | None = None,
                    keyfunc: Callable[[Any], Any] = lambda k: k) -> RDD:
        """Sorts into one partition (streaming batches are small; no range partitioner)."""
        return self.repartition(1).map_partitions(
            lambda it: sorted(it, key=lambda kv: keyfunc(kv[0]), reverse=not ascending)
        )

    def sort_by(
        self, keyfunc: Callable[[Any], Any], ascending: bool = True, num_partitions: int | None = None
    ) -> RDD:
        """The records sorted by ``keyfunc(record)``, in one partition (see ``sort_by_key``)."""
        return self.repartition(1).map_partitions(
            lambda it: sorted(it, key=keyfunc, reverse=not ascending)
        )

    # ---- persistence --------------------------------------------------------------------

    def cache(self) -> RDD:
        """Keep the partitions where their tasks computed them once computed (see ``persist``)."""
        self._persisted = True
        return self

    def persist(self, storage_level: Any = None) -> RDD:
        """Cache the RDD (any ``storage_level`` is accepted: blocks stay with the tasks that
        made them, with a disk copy on local[N])."""
        return self.cache()

    def unpersist(self, blocking: bool = False) -> RDD:
        """Stop caching; the blocks go once no computed-ahead RDD still holds this one."""
        self._persisted = False
        self._blocks = None
        return self

    @property
    def is_cached(self) -> bool:
        """Whether the RDD is cached."""
        return self._persisted

    # ---- actions: async ------------------------------------------------------------------

    async def _run(self, plans: list[TaskPlan] | None = None, what: str = "") -> list[list[Any]]:
        plans = await self._plans() if plans is None else plans
        return await self._runner.run_tasks(plans, what or self.name)

    async def acollect_partitions(self) -> list[list[Any]]:
        """Every partition's records, as a list per partition."""
        return await self._run()

    async def acollect(self) -> list[Any]:
        """Every record, on the driver (awaitable form of ``collect``)."""
        return [x for part in await self._run() for x in part]

    async def acount(self) -> int:
        """How many records (counted in the tasks)."""
        counted = self._pipe("count", lambda _, it: [sum(1 for _ in it)])
        return sum(x for part in await counted._run() for x in part)

    async def atake(self, num: int) -> list[Any]:
        """The first ``num`` records, computing as few partitions as needed."""
        if num <= 0:
            return []
        plans = await self._plans()
        taken: list[Any] = []
        start, step = 0, 1
        while start < len(plans) and len(taken) < num:
            chunk = plans[start : start + step]
            limited = [p.then(Stage("take", _limit(num - len(taken)))) for p in chunk]
            for part in await self._run(limited, f"{self.name} (take)"):
                taken.extend(part)
            start += step
            step *= 4
        return taken[:num]

    async def afirst(self) -> Any:
        """The first record; ValueError for an empty RDD."""
        got = await self.atake(1)
        if not got:
            raise ValueError("RDD is empty")
        return got[0]

    async def ais_empty(self) -> bool:
        """Whether the RDD has no record (computes as few partitions as it can)."""
        return not await self.atake(1)

    async def areduce(self, f: Callable[[Any, Any], Any]) -> Any:
        """The records reduced with ``f`` (per partition in the tasks, then on the driver);
        ValueError for an empty RDD."""
        partial = self._pipe("reduce", lambda _, it: _reduce_partition(f, it))
        values = [x for part in await partial._run() for x in part]
        if not values:
            raise ValueError("cannot reduce an empty RDD")
        result = values[0]
        for value in values[1:]:
            result = f(result, value)
        return result

    async def afold(self, zero_value: Any, f: Callable[[Any, Any], Any]) -> Any:
        """Each partition folded with ``f`` from its own copy of ``zero_value``, then the
        partitions' results folded from another copy (``f`` may update its first argument
        in place, as Spark allows)."""
        partial = self._pipe("fold", lambda _, it: [_fold(copy.deepcopy(zero_value), f, it)])
        results = (x for part in await partial._run() for x in part)
        return _fold(copy.deepcopy(zero_value), f, results)

    async def aaggregate(
        self, zero_value: Any, seq_op: Callable[[Any, Any], Any], comb_op: Callable[[Any, Any], Any]
    ) -> Any:
        """Each partition folded into a copy of ``zero_value`` with ``seq_op``, the results
        merged with ``comb_op`` (Spark's aggregate)."""
        partial = self._pipe(
            "aggregate", lambda _, it: [_fold(copy.deepcopy(zero_value), seq_op, it)]
        )
        results = (x for part in await partial._run() for x in part)
        return _fold(copy.deepcopy(zero_value), comb_op, results)

    async def asum(self) -> Any:
        """The sum of the records."""
        return await self.afold(0, op.add)

    async def amax(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The largest record (by ``key``); ValueError for an empty RDD."""
        return await self.areduce(functools.partial(_larger, key=key))

    async def amin(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The smallest record (by ``key``); ValueError for an empty RDD."""
        return await self.areduce(functools.partial(_smaller, key=key))

    async def astats(self) -> StatCounter:
        """Count, mean, variance, min and max of numeric records in one pass."""
        from .stats import StatCounter, partition_stats

        counters = self.map_partitions(partition_stats)
        total = StatCounter()
        for part in await counters._run():
            for counter in part:
                total.merge_stats(counter)
        return total

    async def amean(self) -> float:
        """The mean of numeric records (nan for an empty RDD)."""
        return (await self.astats()).mean()

    async def avariance(self) -> float:
        """The population variance of numeric records."""
        return (await self.astats()).variance()

    async def astdev(self) -> float:
        """The population standard deviation of numeric records."""
        return (await self.astats()).stdev()

    async def alookup(self, key: Any) -> list[Any]:
        """The values of the (key, value) records whose key is ``key``."""
        return await self.filter(lambda kv: kv[0] == key).values().acollect()

    async def atake_sample(
        self, with_replacement: bool, num: int, seed: int | None = None
    ) -> list[Any]:
        """``num`` records drawn at random (fewer if the RDD has fewer and no replacement),
        in random order; the same ``seed`` gives the same sample."""
        from .sampling import new_seed, take_sample_fraction

        if num < 0:
            raise ValueError(f"takeSample: num must be >= 0, got {num}")
        rng = random.Random(new_seed() if seed is None else seed)
        total = await self.acount()
        if num == 0 or total == 0:
            return []
        if not with_replacement and num >= total:
            records = await self.acollect()
            rng.shuffle(records)
            return records
        fraction = take_sample_fraction(num, total, with_replacement)
        records = await self.sample(with_replacement, fraction, rng.randrange(1 << 62)).acollect()
        while len(records) < num:  # unlikely (0.01%): draw again
            records = await self.sample(
                with_replacement, fraction, rng.randrange(1 << 62)
            ).acollect()
        rng.shuffle(records)
        return records[:num]

    async def asave_as_text_file(self, path: str, compression_codec_class: str | None = None) -> None:
        """Write the records as lines, one ``part-NNNNN`` file per partition, into the new
        directory ``path`` (FileExistsError if it exists, as in Spark); Hadoop's GzipCodec
        writes ``part-NNNNN.gz``."""
        from .save import CODECS, asave, text_part_writer

        if compression_codec_class is not None and compression_codec_class not in CODECS:
            raise ValueError(
                f"saveAsTextFile: unsupported codec {compression_codec_class!r}; "
                f"supported: {', '.join(CODECS)}"
            )
        suffix = CODECS.get(compression_codec_class or "", "")
        await asave(self, path, lambda d: text_part_writer(d, suffix), replace=False)

    async def aforeach_partition(self, f: Callable[[Iterator[Any]], Any]) -> None:
        """Run ``f(records)`` for every partition, in the tasks."""
        await self._pipe("foreach_partition", lambda _, it: _drain(f(it)))._run()

    async def aforeach(self, f: Callable[[Any], Any]) -> None:
        """Run ``f(record)`` for every record, in the tasks."""
        await self._pipe("foreach", lambda _, it: _drain(f(x) for x in it))._run()

    async def acount_by_value(self) -> dict[Any, int]:
        """How often each distinct record occurs, as a dict on the driver."""
        counted = self._pipe("count_by_value", lambda _, it: _count_partition(it).items())
        totals: defaultdict[Any, int] = defaultdict(int)
        for part in await counted._run():
            for value, count in part:
                totals[value] += count
        return totals

    async def acount_by_key(self) -> dict[Any, int]:
        """How many records each key has, as a dict on the driver."""
        return await self.keys().acount_by_value()

    async def acollect_as_map(self) -> dict[Any, Any]:
        """The (key, value) records as a dict (a later value of a key wins)."""
        return dict(await self.acollect())

    async def atake_ordered(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        """The ``num`` smallest records (by ``key``), ascending."""
        partial = self._pipe("take_ordered", lambda _, it: heapq.nsmallest(num, it, key=key))
        return heapq.nsmallest(num, await partial.acollect(), key=key)

    async def atop(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        """The ``num`` largest records (by ``key``), descending."""
        partial = self._pipe("top", lambda _, it: heapq.nlargest(num, it, key=key))
        return heapq.nlargest(num, await partial.acollect(), key=key)

    # ---- actions: blocking (off the event loop) ------------------------------------------

    def collect(self) -> list[Any]:
        """Every record, on the driver (blocking: call it off the event loop)."""
        return self._runner.run_sync(self.acollect())

    def count(self) -> int:
        """How many records (blocking)."""
        return self._runner.run_sync(self.acount())

    def take(self, num: int) -> list[Any]:
        """The first ``num`` records (blocking; see ``atake``)."""
        return self._runner.run_sync(self.atake(num))

    def first(self) -> Any:
        """The first record (blocking); ValueError for an empty RDD."""
        return self._runner.run_sync(self.afirst())

    def is_empty(self) -> bool:
        """Whether the RDD has no record (blocking)."""
        return self._runner.run_sync(self.ais_empty())

    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        """The records reduced with ``f`` (blocking; see ``areduce``)."""
        return self._runner.run_sync(self.areduce(f))

    def fold(self, zero_value: Any, f: Callable[[Any, Any], Any]) -> Any:
        """The records folded with ``f`` from ``zero_value`` (blocking; see ``afold``)."""
        return self._runner.run_sync(self.afold(zero_value, f))

    def sum(self) -> Any:
        """The sum of the records (blocking)."""
        return self._runner.run_sync(self.asum())

    def max(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The largest record, by ``key`` (blocking)."""
        return self._runner.run_sync(self.amax(key))

    def min(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The smallest record, by ``key`` (blocking)."""
        return self._runner.run_sync(self.amin(key))

    def aggregate(
        self, zero_value: Any, seq_op: Callable[[Any, Any], Any], comb_op: Callable[[Any, Any], Any]
    ) -> Any:
        """``seq_op`` per partition from a copy of ``zero_value``, ``comb_op`` across
        partitions (blocking; see ``aaggregate``)."""
        return self._runner.run_sync(self.aaggregate(zero_value, seq_op, comb_op))

    def stats(self) -> StatCounter:
        """Count, mean, variance, min and max of numeric records (blocking)."""
        return self._runner.run_sync(self.astats())

    def mean(self) -> float:
        """The mean of numeric records (blocking)."""
        return self._runner.run_sync(self.amean())

    def variance(self) -> float:
        """The population variance of numeric records (blocking)."""
        return self._runner.run_sync(self.avariance())

    def stdev(self) -> float:
        """The population standard deviation of numeric records (blocking)."""
        return self._runner.run_sync(self.astdev())

    def lookup(self, key: Any) -> list[Any]:
        """The values of key ``key`` (blocking)."""
        return self._runner.run_sync(self.alookup(key))

    def take_sample(self, with_replacement: bool, num: int, seed: int | None = None) -> list[Any]:
        """``num`` records drawn at random (blocking; see ``atake_sample``)."""
        return self._runner.run_sync(self.atake_sample(with_replacement, num, seed))

    def save_as_text_file(self, path: str, compression_codec_class: str | None = None) -> None:
        """Write the records as text files into the new directory ``path`` (blocking; see
        ``asave_as_text_file``)."""
        self._runner.run_sync(self.asave_as_text_file(path, compression_codec_class))

    def foreach_partition(self, f: Callable[[Iterator[Any]], Any]) -> None:
        """Run ``f(records)`` for every partition, in the tasks (blocking)."""
        self._runner.run_sync(self.aforeach_partition(f))

    def foreach(self, f: Callable[[Any], Any]) -> None:
        """Run ``f(record)`` for every record, in the tasks (blocking)."""
        self._runner.run_sync(self.aforeach(f))

    def count_by_value(self) -> dict[Any, int]:
        """How often each distinct record occurs (blocking)."""
        return self._runner.run_sync(self.acount_by_value())

    def count_by_key(self) -> dict[Any, int]:
        """How many records each key has (blocking)."""
        return self._runner.run_sync(self.acount_by_key())

    def collect_as_map(self) -> dict[Any, Any]:
        """The (key, value) records as a dict (blocking)."""
        return self._runner.run_sync(self.acollect_as_map())

    def take_ordered(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        """The ``num`` smallest records, by ``key`` (blocking)."""
        return self._runner.run_sync(self.atake_ordered(num, key))

    def top(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        """The ``num`` largest records, by ``key`` (blocking)."""
        return self._runner.run_sync(self.atop(num, key))


# ---- RDD kinds ---------------------------------------------------------------------------


class ParallelCollectionRDD(RDD):
    """Data already on the driver, one list per partition (queue items, received blocks).

    ``reusable`` (``parallelize``): each partition is serialized once, on first use, into
    the form the backend's tasks read it in (``ExecutorBackend.share``), as PySpark's
    parallelize does, rather than again by every task of every job that uses the RDD. The
    first job pickles every partition before its tasks start. Received blocks, queue items
    given as lists and initial states are read by one job: on one machine they travel with
    their tasks; a cluster backend still places them on its workers once (``share``).
    """

    def __init__(
        self, runner: TaskRunner, partitions: list[list[Any]], name: str = "parallelize",
        reusable: bool = False,
    ) -> None:
        super().__init__(runner, len(partitions), name)
        self._partitions = partitions
        self._reusable = reusable
        self._shared: list[TaskInput] | None = None
        self._sharing = asyncio.Lock()  # binds to a loop on first use, not here

    async def _uncached_plans(self) -> list[TaskPlan]:
        async with self._sharing:  # concurrent jobs share one copy
            if self._shared is None:
                shared = await self._runner.backend.share(self._partitions, self._reusable)
                self._shared = [
                    RecordsInput(part) if held is None else held
                    for part, held in zip(self._partitions, shared, strict=True)
                ]
        return [TaskPlan(task_input) for task_input in self._shared]

    def _forget_lineage(self) -> None:
        self._shared = None  # cached: tasks read the blocks, and the shared copies can go

    @property
    def partitions(self) -> list[list[Any]]:
        return self._partitions


class PipelinedRDD(RDD):
    """A narrow operator: the parent's tasks with one more fused stage."""

    def __init__(self, parent: RDD, stage: Stage) -> None:
        super().__init__(parent._runner, parent.num_partitions, stage.operator)
        self._parent = parent
        self._stage = stage

    async def _uncached_plans(self) -> list[TaskPlan]:
        plans = await self._parent._plans()
        return [plan.then(self._stage.at(i)) for i, plan in enumerate(plans)]


class UnionRDD(RDD):
    """The partitions of several RDDs side by side (no shuffle)."""

    def __init__(self, rdds: list[RDD]) -> None:
        super().__init__(rdds[0]._runner, sum(r.num_partitions for r in rdds), "union")
        self._rdds = rdds

    async def _uncached_plans(self) -> list[TaskPlan]:
        plans = await asyncio.gather(*(r._plans() for r in self._rdds))
        return [p for group in plans for p in group]


class ShuffledRDD(RDD):
    """The reduce side of a shuffle; running it first runs the parent's map tasks."""

    def __init__(
        self,
        parent: RDD,
        write: ShuffleWrite,
        merge: Callable[[list[list[Any]]], Iterable[Any]],
        name: str,
    ) -> None:
        super().__init__(parent._runner, write.num_partitions, name)
        self._parent = parent
        self._write = write
        self._merge = merge

    async def _uncached_plans(self) -> list[TaskPlan]:
        map_plans = [
            dataclasses.replace(p, shuffle_write=self._write) for p in await self._parent._plans()
        ]
        outputs = await self._runner.run_tasks(map_plans, f"{self.name} (map side)")
        return [
            TaskPlan(ShuffleInput([out[i] for out in outputs], self._merge, self.name))
            for i in range(self.num_partitions)
        ]


async def afetch_cached(runner: TaskRunner, rdds: list[RDD]) -> list[list[list[Any]]]:
    """The partitions of several cached RDDs on the driver (a checkpoint of a window's
    span), with one task per partition index reading that partition of every RDD where
    those blocks live, instead of one task per block."""
    refs = [await rdd._cached_blocks() for rdd in rdds]
    width = max((len(r) for r in refs), default=0)
    columns = [[r[i] for r in refs if i < len(r)] for i in range(width)]
    plans = [
        TaskPlan(RecordsInput([]), reads=tuple(blocks)).then(Stage("fetch", _read_blocks(blocks)))
        for blocks in columns
    ]
    fetched = [iter(part) for part in await runner.run_tasks(plans, "fetch cached partitions")]
    return [[next(fetched[i]) for i in range(len(r))] for r in refs]


def _read_blocks(blocks: list[BlockRef]) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    return lambda _index, _records: [block.records() for block in blocks]


# ---- small task-side helpers (module level so they pickle by reference) ----------------


def _identity(x: Any) -> Any:
    return x


def _tagger(side: int) -> Callable[[Any], tuple[int, Any]]:
    return lambda v: (side, v)


def _limit(num: int) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    return lambda _, it: itertools.islice(it, num)


def _drain(it: Any) -> list[Any]:
    if it is not None:
        for _ in it:
            pass
    return []


def _reduce_partition(f: Callable[[Any, Any], Any], it: Iterator[Any]) -> list[Any]:
    sentinel = object()
    result: Any = sentinel
    for x in it:
        result = x if result is sentinel else f(result, x)
    return [] if result is sentinel else [result]


def _larger(a: Any, b: Any, key: Callable[[Any], Any] | None) -> Any:
    return max(a, b, key=key) if key is not None else max(a, b)


def _smaller(a: Any, b: Any, key: Callable[[Any], Any] | None) -> Any:
    return min(a, b, key=key) if key is not None else min(a, b)


def _fold(zero: Any, f: Callable[[Any, Any], Any], it: Iterable[Any]) -> Any:
    result = zero
    for x in it:
        result = f(result, x)
    return result


def _count_partition(it: Iterator[Any]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for x in it:
        counts[x] = counts.get(x, 0) + 1
    return counts
