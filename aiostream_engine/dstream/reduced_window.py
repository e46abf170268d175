"""The window streams: ``WindowedDStream`` (window, and the naive reduce over a window) and
``ReducedWindowedDStream`` (reduce_by_key_and_window with an inverse function).

Both compute their parent's RDDs in time order, including parent batches that fall in
no window (a slide longer than the window), and ask the parent for the RDD of every
completed batch: a source whose batch t exists only around time t (receiver blocks,
a directory listing) still reaches a window computed later, and a queue stream hands
out its items to the batch times they belong to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import WindowCheckError
from ..rdd.core import RDD, ParallelCollectionRDD, afetch_cached
from ..rdd.tasks import RecordsInput, Stage, TaskPlan
from ..timeutil import to_seconds
from .base import DStream
from .window_rdds import Check, MaterializedRDD, SpanBatchRDD, union_all

if TYPE_CHECKING:
    from ..executor.block_store import BlockRef
    from ..executor.runner import TaskRunner

log = logging.getLogger(__name__)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()
CHECKPOINT_VERSION = 1


class _WindowBase(DStream):
    """Shared time arithmetic of the window streams."""

    requires_checkpoint = False

    def __init__(self, parent: DStream, name: str, window_ms: int, slide_ms: int) -> None:
        super().__init__(parent.context, [parent], name, slide_ms)
        self.window_ms = window_ms

    @property
    def window_duration(self) -> float:
        return to_seconds(self.window_ms)

    @property
    def _parent(self) -> DStream:
        return self.dependencies[0]

    def _parent_times(self, after_ms: int, until_ms: int) -> list[int]:
        """The parent's valid batch times in (after_ms, until_ms], oldest first."""
        step = self._parent.slide_ms
        start = after_ms + step
        return [t for t in range(start, until_ms + 1, step) if self._parent.is_time_valid(t)]

    def _touch_parent(self, time_ms: int) -> None:
        """Have the parent generate its RDD of a completed batch now (see module doc)."""
        if not self._parent.is_time_valid(time_ms):
            return
        try:
            self._parent_rdd(time_ms)
        except Exception:  # it fails again, reported, when a window needs that batch
            log.debug("%s: parent batch %d not generated early", self.name, time_ms, exc_info=True)

    def _parent_rdd(self, time_ms: int) -> RDD | None:
        return self._parent.get_or_compute(time_ms)

    def clear_metadata(self, time_ms: int) -> None:
        self._touch_parent(time_ms)
        super().clear_metadata(time_ms)


class WindowedDStream(_WindowBase):
    """At t: the union of the parent's RDDs with times in (t - W, t]."""

    def __init__(self, parent: DStream, window_ms: int, slide_ms: int) -> None:
        super().__init__(parent, "window", window_ms, slide_ms)

    @property
    def parent_remember_ms(self) -> int:
        return self.window_ms

    def compute(self, time_ms: int) -> RDD | None:
        span = max(self.window_ms, self.slide_ms)
        rdds = []
        for t in self._parent_times(time_ms - span, time_ms):
            rdd = self._parent_rdd(t)  # a batch in no window is still generated, in order
            if rdd is None or t <= time_ms - self.window_ms:
                continue
            if not isinstance(rdd, ParallelCollectionRDD | MaterializedRDD | SpanBatchRDD):
                rdd.cache()  # Spark persists a window's parent: each batch serves W/S windows
            rdds.append(rdd)
        return union_all(rdds, self._ssc.spark_context)


# ---- reduce_by_key_and_window with an inverse function ------------------------------------


def _reduce_values(func: Callable[[Any, Any], Any], values: list[Any]) -> Any:
    result = values[0]
    for value in values[1:]:
        result = func(result, value)
    return result


def _window_merger(
    func: Callable[[Any, Any], Any],
    inv_func: Callable[[Any, Any], Any],
    filter_func: Callable[[Any], bool] | None,
) -> Callable[[Iterator[Any]], Iterable[Any]]:
    """Runs in the task: (key, ([previous], [leaving...], [entering...])) -> (key, value)."""

    def merge(records: Iterator[Any]) -> Iterator[Any]:
        for key, (previous, leaving, entering) in records:
            if previous:
                value = previous[0]
                if leaving:
                    value = inv_func(value, _reduce_values(func, leaving))
                if entering:
                    value = func(value, _reduce_values(func, entering))
            elif entering:
                value = _reduce_values(func, entering)
            else:  # only in leaving batches: it had been filtered out of the window
                continue
            if filter_func is None or filter_func((key, value)):
                yield key, value

    return merge


def _reduce_into(
    func: Callable[[Any, Any], Any], into: dict[Any, Any], records: Iterable[Any]
) -> None:
    for key, value in records:
        into[key] = func(into[key], value) if key in into else value


def _slide_task(
    func: Callable[[Any, Any], Any],
    inv_func: Callable[[Any, Any], Any],
    filter_func: Callable[[Any], bool] | None,
    previous: BlockRef | None,
    leaving: list[BlockRef],
    entering: list[BlockRef],
    fresh_target: BlockRef | None,
) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    """One partition of a slide, in the task: its input is the newest batch's reduced
    records of this partition, stored as ``fresh_target``; it returns the window's records.
    Every input is partitioned alike, so a key's values all meet in this partition, and
    the blocks it reads live on the worker it runs on."""

    def run(_index: int, fresh: Iterator[Any]) -> list[Any]:
        fresh_records = list(fresh)
        if fresh_target is not None:
            fresh_target.put(fresh_records)
        left: dict[Any, Any] = {}
        for block in leaving:
            _reduce_into(func, left, block.records())
        entered: dict[Any, Any] = {}
        for block in entering:
            _reduce_into(func, entered, block.records())
        _reduce_into(func, entered, fresh_records)
        window: list[Any] = []
        for key, value in previous.records() if previous is not None else ():
            if key in left:
                value = inv_func(value, left[key])
            if key in entered:
                value = func(value, entered.pop(key))
            window.append((key, value))
        window.extend(entered.items())  # keys with no previous value
        if filter_func is not None:
            window = [pair for pair in window if filter_func(pair)]
        return window

    return run


class _SlideRDD(RDD):
    """A slide as one task per partition: the reduce side of the newest batch's shuffle,
    merged in the same task with the previous window and the batches leaving and entering,
    read as blocks on the worker that holds them. The task stores the newest batch's
    partition (its ``SpanBatchRDD``'s block) and returns the window's partition."""

    def __init__(
        self,
        stream: ReducedWindowedDStream,
        num_partitions: int,
        fresh: SpanBatchRDD | None,
        previous: RDD | None,
        leaving: list[RDD],
        entering: list[RDD],
    ) -> None:
        runner = stream.context.spark_context
        super().__init__(runner, num_partitions, stream.operator_name)
        self._merge = (stream._func, stream._inv_func, stream._filter_func)
        self._fresh = fresh
        self._previous = previous
        self._leaving = leaving
        self._entering = entering

    async def _uncached_plans(self) -> list[TaskPlan]:
        n = self.num_partitions
        previous: list[BlockRef | None] = [None] * n
        if self._previous is not None:
            previous = list(await self._previous._cached_blocks())
        leaving = [await rdd._cached_blocks() for rdd in self._leaving]
        entering = [await rdd._cached_blocks() for rdd in self._entering]
        fresh = self._fresh
        lineage = fresh.pending_lineage if fresh is not None else None
        targets: list[BlockRef | None] = [None] * n
        if lineage is not None:
            assert fresh is not None
            base = await lineage._plans()
            targets = list(fresh.targets)
        else:
            if fresh is not None:
                entering.append(await fresh._cached_blocks())
            base = [TaskPlan(RecordsInput([])) for _ in range(n)]
        plans = []
        for i, plan in enumerate(base):
            left, entered = [b[i] for b in leaving], [b[i] for b in entering]
            task = _slide_task(*self._merge, previous[i], left, entered, targets[i])
            reads = tuple(b for b in (previous[i], *left, *entered, targets[i]) if b is not None)
            plans.append(plan.then(Stage(self.name, task), reads=reads))
        return plans

    def fresh_computed(self) -> None:
        """The window's tasks all ran: the newest batch's blocks are stored."""
        if self._fresh is not None:
            self._fresh.set_computed()


def _filtered(filter_func: Callable[[Any], bool]) -> Callable[[Iterator[Any]], Iterable[Any]]:
    return lambda records: filter(filter_func, records)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    try:
        return bool(a == b)
    except Exception:
        return False


class ReducedWindowedDStream(_WindowBase):
    """reduce_by_key_and_window with an inverse function: each slide is
    ``previous window - leaving batches + entering batches``, per key, on the executor.

    It keeps, for the window's span, each parent batch's reduced-by-key result, computed
    once (``SpanBatchRDD``), and the previous window's result (``MaterializedRDD``), both
    as blocks on the executors, never copied through the driver; both are dropped once
    they leave the span (as batches complete). The per-key merge runs in tasks: normally
    each partition's slide is one task that also finishes the newest batch's reduce
    (``_SlideRDD``: every input is hash-partitioned into the same partition count);
    restored data partitioned otherwise goes through a cogroup instead. So a slide costs
    the batches entering and leaving plus the previous window's keys, whatever the
    window's length.
    """

    requires_checkpoint = True

    def __init__(
        self,
        reduced: DStream,
        func: Callable[[Any, Any], Any],
        inv_func: Callable[[Any, Any], Any],
        filter_func: Callable[[Any], bool] | None,
        window_ms: int,
        slide_ms: int,
        num_partitions: int | None,
        state_name: str | None = None,
    ) -> None:
        super().__init__(reduced, "reduce_by_key_and_window", window_ms, slide_ms)
        self._func = func
        self._inv_func = inv_func
        self._filter_func = filter_func
        self.num_partitions = num_partitions
        self.state_name = state_name
        self._batches: dict[int, RDD] = {}  # parent time -> its reduced batch
        self._windows: dict[int, RDD] = {}  # window time -> its result
        self._last_window_ms: int | None = None  # the newest window computed
        self._completed_ms: int | None = None  # the newest batch completed

    @property
    def operator_name(self) -> str:
        return self.state_name or "reduce_by_key_and_window"

    @property
    def parent_remember_ms(self) -> int:
        # The span's batches are kept here, computed; the parent keeps no lineage for it.
        return 0

    # ---- the span ---------------------------------------------------------------------------

    def _batch(self, time_ms: int) -> RDD | None:
        rdd = self._batches.get(time_ms)
        if rdd is None:
            parent_rdd = self._parent_rdd(time_ms)
            if parent_rdd is None:
                return None
            rdd = SpanBatchRDD(parent_rdd, f"{self.operator_name} batch {to_seconds(time_ms):g}")
            self._batches[time_ms] = rdd
        return rdd

    def _touch_parent(self, time_ms: int) -> None:
        if time_ms in self._batches or not self._parent.is_time_valid(time_ms):
            return
        if self._last_window_ms is not None and time_ms <= self._last_window_ms:
            return  # a window already took it (or it fell in no window)
        try:
            if self._in_a_window(time_ms):
                self._batch(time_ms)
            else:
                self._parent_rdd(time_ms)
        except Exception:  # it fails again, reported, when a window needs that batch
            log.debug("%s: batch %d not generated early", self.name, time_ms, exc_info=True)

    def _in_a_window(self, time_ms: int) -> bool:
        """Whether the first window at or after ``time_ms`` contains it."""
        assert self._zero_ms is not None
        since = time_ms - self._zero_ms
        next_window = self._zero_ms + -(-since // self.slide_ms) * self.slide_ms
        return time_ms > next_window - self.window_ms

    def _span(self, times: Iterable[int]) -> list[RDD]:
        return [rdd for t in times if (rdd := self._batch(t)) is not None]

    # ---- one slide ----------------------------------------------------------------------------

    def compute(self, time_ms: int) -> RDD | None:
        window, slide = self.window_ms, self.slide_ms
        runner = self._ssc.spark_context
        previous_ms = time_ms - slide
        # Parent batches strictly in no window (slide > window) are generated, in order.
        for t in self._parent_times(previous_ms, time_ms - window):
            if t not in self._batches:
                self._parent_rdd(t)
        leaving = self._span(self._parent_times(previous_ms - window, min(previous_ms, time_ms - window)))
        entering = self._span(self._parent_times(max(previous_ms, time_ms - window), time_ms))
        previous = self._windows.get(previous_ms)
        n = self.num_partitions or runner.default_parallelism
        name = f"{self.operator_name} window {to_seconds(time_ms):g}"
        on_computed = None
        if previous is None and self._zero_ms is not None and previous_ms > self._zero_ms:
            # No previous result (restored without it, or its batch failed): from scratch.
            merged = self._from_scratch(time_ms)
        elif all(r.num_partitions == n for r in [*leaving, *entering, *([previous] if previous else [])]):
            # Everything is hash-partitioned alike (n partitions): merge partition-wise, in
            # the tasks that reduce the newest batch.
            newest = self._batches.get(time_ms)
            fresh = newest if isinstance(newest, SpanBatchRDD) else None
            others = [r for r in entering if r is not fresh]
            slide_rdd = _SlideRDD(self, n, fresh, previous, leaving, others)
            merged, on_computed = slide_rdd, slide_rdd.fresh_computed
        else:  # partitioned differently (restored from a run with another partition count)
            merged = (
                (previous or runner.empty_rdd())
                .cogroup(union_all(leaving, runner), union_all(entering, runner), num_partitions=n)
                .map_partitions(_window_merger(self._func, self._inv_func, self._filter_func))
            )
        result = MaterializedRDD(merged, name, self._check_for(time_ms), on_computed)
        self._windows[time_ms] = result
        self._last_window_ms = time_ms
        return result

    def _window_at_or_before(self, time_ms: int) -> int | None:
        return max((t for t in self._windows if t <= time_ms), default=None)

    def clear_metadata(self, time_ms: int) -> None:
        """Batch ``time_ms`` completed: drop the windows before the newest completed one and
        the batches that have left it (later windows, computed ahead, hold what they use)."""
        super().clear_metadata(time_ms)
        self._completed_ms = max(self._completed_ms or time_ms, time_ms)
        newest = self._window_at_or_before(time_ms)
        if newest is None:
            return
        for t in [t for t in self._windows if t < newest]:
            del self._windows[t]
        for t in [t for t in self._batches if t <= newest - self.window_ms]:
            del self._batches[t]

    def _from_scratch(self, time_ms: int) -> RDD:
        runner = self._ssc.spark_context
        batches = self._span(self._parent_times(time_ms - self.window_ms, time_ms))
        rdd = union_all(batches, runner).reduce_by_key(self._func, self.num_partitions)
        if self._filter_func is not None:
            rdd = rdd.map_partitions(_filtered(self._filter_func))
        return rdd

    # ---- checked inverse ----------------------------------------------------------------------

    def _check_for(self, time_ms: int) -> Check | None:
        every = self._ssc.conf.window_check_interval or 0
        assert self._zero_ms is not None
        if every <= 0 or ((time_ms - self._zero_ms) // self.slide_ms) % every:
            return None
        expected_rdd = self._from_scratch(time_ms)

        async def check(
            parts: list[list[Any]],
        ) -> tuple[list[list[Any]], BaseException | None]:
            expected_parts = await expected_rdd.acollect_partitions()
            got = {k: v for part in parts for k, v in part}
            expected = {k: v for part in expected_parts for k, v in part}
            differing = {
                key: (got.get(key, ABSENT), expected.get(key, ABSENT))
                for key in got.keys() | expected.keys()
                if key not in got or key not in expected or not _same(got[key], expected[key])
            }
            if not differing:
                return parts, None
            error = WindowCheckError(
                self.operator_name,
                self._mismatch_message(time_ms, differing),
                dict(sorted(differing.items(), key=lambda kv: repr(kv[0]))[:20]),
            )
            return expected_parts, error  # later slides go on from the right window

        return check

    def _mismatch_message(self, time_ms: int, differing: dict[Any, tuple[Any, Any]]) -> str:
        sample = sorted(differing.items(), key=lambda kv: repr(kv[0]))[:5]
        shown = "; ".join(
            f"key {key!r}: incremental {got!r}, recomputed {want!r}" for key, (got, want) in sample
        )
        return (
            f"{self.operator_name}: the incremental window at {to_seconds(time_ms):g} s differs "
            f"from a recomputation from scratch for {len(differing)} key(s) ({shown}). "
            "The inverse function must undo the function (inv_func(func(a, b), b) == a), and "
            "without filter_func a key whose value returns to zero stays in the window "
            "(checked every window_check_interval slides)."
        )

    # ---- checkpoint hooks ---------------------------------------------------------------------

    async def checkpoint_data(self, time_ms: int | None = None) -> dict[str, Any] | None:
        """What resuming after batch ``time_ms`` needs, as plain partitions: the newest
        window at or before it and the reduced batches up to it that later windows use.

        ``time_ms`` defaults to the newest batch generated, but at most the one after the
        newest completed batch (a state checkpoint is written as its batch completes).
        """
        if time_ms is None:
            time_ms = self._default_checkpoint_time()
            if time_ms is None:
                return None
        self._touch_parent(time_ms)
        newest = self._window_at_or_before(time_ms)
        windows = {newest: self._windows[newest]} if newest is not None else {}
        batches = {
            t: rdd
            for t, rdd in self._batches.items()
            if t <= time_ms and (newest is None or t > newest - self.window_ms)
        }
        saved = await _partitions_of(self._ssc.spark_context, [*windows.values(), *batches.values()])
        return {
            "version": CHECKPOINT_VERSION,
            "operator": self.name,
            "time_ms": time_ms,
            "window_ms": self.window_ms,
            "slide_ms": self.slide_ms,
            "window": dict(zip(windows, saved[: len(windows)], strict=True)),
            "batches": dict(zip(batches, saved[len(windows) :], strict=True)),
        }

    def _default_checkpoint_time(self) -> int | None:
        generated = getattr(self._ssc._job_generator, "last_generated_ms", None)
        if generated is None:
            return None
        if self._completed_ms is None:
            return generated
        return min(generated, self._completed_ms + self._ssc.batch_ms)

    def restore_checkpoint_data(self, data: dict[str, Any] | None) -> None:
        """Resume from ``checkpoint_data``'s result: the next window after its batch starts
        from the saved window, removing and adding batches as usual."""
        if not data:
            return
        if data.get("operator") != self.name or data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{self.operator_name}: cannot restore checkpoint data of "
                f"{data.get('operator')!r} (version {data.get('version')!r})"
            )
        runner = self._ssc.spark_context
        self._windows = {
            int(t): runner.from_partitions(parts, f"{self.operator_name} window (restored)")
            for t, parts in data.get("window", {}).items()
        }
        self._batches = {
            int(t): runner.from_partitions(parts, f"{self.operator_name} batch (restored)")
            for t, parts in data.get("batches", {}).items()
        }
        self._last_window_ms = max(self._windows, default=None)
        if data.get("time_ms") is not None:
            self._completed_ms = int(data["time_ms"])


async def _partitions_of(runner: TaskRunner, rdds: list[RDD]) -> list[list[list[Any]]]:
    """Each RDD's partitions on the driver: restored ones as they are, the others fetched
    from the executors together."""
    cached = [rdd for rdd in rdds if not isinstance(rdd, ParallelCollectionRDD)]
    fetched = iter(await afetch_cached(runner, cached))
    return [
        [list(part) for part in rdd.partitions]
        if isinstance(rdd, ParallelCollectionRDD)
        else next(fetched)
        for rdd in rdds
    ]
