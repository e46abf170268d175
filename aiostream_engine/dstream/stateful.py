"""Stateful operations (update_state_by_key, map_with_state): the DStream methods and the
part that runs in tasks.

A state stream's state at batch t is an RDD of ``num_partitions`` partitions, hash
partitioned by ``stable_hash`` of the key. It is built from the state at t - slide (cached
where its tasks ran, so computed once and never copied to the driver) and batch t's
records: only the new records are shuffled, into the same partitions, and task i runs the
user function over state partition i and the new records of partition i, on the worker
holding state partition i. The state itself never goes through a shuffle, and once a state
RDD is computed it forgets its parents, so lineage does not grow from batch to batch; the
stream keeps only the state RDDs it still needs (see ``state_spec``).

The stream classes live in ``state_spec`` because ``base`` imports this module to mix
``StateOperations`` into DStream, so this module cannot subclass DStream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ..executor.block_store import BlockRef
from ..hashing import stable_hash
from ..rdd.aggregation import concat
from ..rdd.core import RDD, ShuffledRDD
from ..rdd.tasks import ShuffleWrite, Stage, TaskPlan

if TYPE_CHECKING:
    from .base import DStream
    from .state_spec import MapWithStateDStream, StateDStream, StateSpec

# A step turns (state partition i, new records of partition i) into state partition i.
Step = Callable[[list[Any], Iterator[Any]], Iterable[Any]]


class StateOperations:
    """Mixed into DStream."""

    def update_state_by_key(
        self,
        update_func: Callable[[list[Any], Any], Any],
        num_partitions: int | None = None,
        initial_rdd: RDD | Iterable[tuple[Any, Any]] | None = None,
        *,
        name: str | None = None,
    ) -> StateDStream:
        """Per-key state over (key, value) records: every batch ``update_func(new_values,
        state_or_None)`` runs for every key in the state or in the batch (``new_values`` is
        ``[]`` for a key without records) and returns the new state, or None to remove the
        key. ``initial_rdd`` (pairs of key and state) seeds the state. The stream emits the
        whole state, (key, state) pairs, every batch. ``name`` names the state in
        checkpoints (default: derived from the graph)."""
        from .state_spec import StateDStream

        return StateDStream(cast("DStream", self), update_func, num_partitions, initial_rdd, name)

    def map_with_state(self, spec: StateSpec) -> MapWithStateDStream:
        """Per-key state over (key, value) records: ``spec.func(key, value, state)`` runs
        once per record (in batch order within a key) and the stream emits what it returns,
        one output per call; with a timeout, a key without data for longer is called once
        more with value None and ``state.is_timing_out()``, then removed.
        ``state_snapshots()`` on the result emits every (key, state) after each batch."""
        from .state_spec import MapWithStateDStream, StateSpec

        if not isinstance(spec, StateSpec):
            raise TypeError(f"map_with_state takes a StateSpec, got {type(spec).__name__}")
        return MapWithStateDStream(cast("DStream", self), spec)


# ---- State: what a map_with_state function sees -----------------------------------------


class State:
    """The state of one key inside a map_with_state function (Spark's ``State``)."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        getOption: Callable[..., Any]
        isTimingOut: Callable[..., bool]
    # end of PySpark's names

    __slots__ = ("_key", "_defined", "_value", "_updated", "_removed", "_timing_out")

    def __init__(self) -> None:
        self._wrap(None, False, None)

    def _wrap(self, key: Any, defined: bool, value: Any, timing_out: bool = False) -> None:
        self._key = key
        self._defined = defined
        self._value = value if defined else None
        self._updated = False
        self._removed = False
        self._timing_out = timing_out

    def exists(self) -> bool:
        """Whether the key has a state."""
        return self._defined

    def get(self) -> Any:
        """The key's state; LookupError if it has none."""
        if not self._defined:
            raise LookupError(
                f"map_with_state: key {self._key!r} has no state (check state.exists() first)"
            )
        return self._value

    def get_option(self, default: Any = None) -> Any:
        """The state, or ``default`` when the key has none."""
        return self._value if self._defined else default

    def update(self, value: Any) -> None:
        """Set the key's state (not allowed while it is timing out)."""
        if self._timing_out:
            raise RuntimeError(
                f"map_with_state: cannot update the state of key {self._key!r}: it is timing "
                "out (this is the key's last call, with value None; it is removed after it)"
            )
        if self._removed:
            raise RuntimeError(
                f"map_with_state: cannot update the state of key {self._key!r} after "
                "removing it in the same call"
            )
        self._value = value
        self._defined = True
        self._updated = True

    def remove(self) -> None:
        """Drop the key's state (a no-op on a timing-out state: it is removed anyway)."""
        if self._timing_out:
            return
        self._value = None
        self._defined = False
        self._updated = False
        self._removed = True

    def is_timing_out(self) -> bool:
        """Whether this is the key's last call, made because it timed out."""
        return self._timing_out

    def __repr__(self) -> str:
        if self._timing_out:
            return f"State({self._value!r}, timing out)"
        return f"State({self._value!r})" if self._defined else "State(<none>)"


# ---- the state RDD -----------------------------------------------------------------------


class StateRDD(RDD):
    """Partition i = ``step(previous state partition i, new records of partition i)``.

    ``prev`` must have ``num_partitions`` partitions, hash partitioned by ``stable_hash``;
    ``new`` is shuffled into the same partitioning. Cached from the start, as blocks where
    its tasks ran (``executor.block_store``): task i reads state block i where it lives and
    stores state block i there, so the state never passes through the driver. Once
    computed it drops ``prev`` and ``new`` (its lineage), so lineage does not grow from
    batch to batch; a lost worker's blocks come back from their disk copies.
    """

    def __init__(self, prev: RDD, new: RDD, num_partitions: int, step: Step, name: str) -> None:
        super().__init__(new._runner, num_partitions, name)
        self._prev: RDD | None = prev
        self._new: RDD | None = new
        self._step = step
        self.cache()

    async def _uncached_plans(self) -> list[TaskPlan]:
        prev, new = self._prev, self._new
        assert prev is not None and new is not None, "a computed state RDD never recomputes"
        if prev.num_partitions != self.num_partitions:
            raise RuntimeError(
                f"{self.name}: the previous state has {prev.num_partitions} partitions, "
                f"expected {self.num_partitions}"
            )
        state_blocks = await prev._cached_blocks()
        write = ShuffleWrite(
            self.num_partitions, f"{self.name} (shuffle of the (key, value) records)", stable_hash
        )
        plans = await ShuffledRDD(new, write, concat, self.name)._plans()
        return [
            plan.then(Stage(self.name, _with_state(self._step, block)), reads=(block,))
            for plan, block in zip(plans, state_blocks, strict=True)
        ]

    def _forget_lineage(self) -> None:
        self._prev = self._new = None

    def unpersist(self, blocking: bool = False) -> RDD:
        return self  # it cannot recompute: its blocks go when the last reference to it does


def _with_state(step: Step, block: BlockRef) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    return lambda _index, records: step(block.records(), records)


# ---- steps (run in tasks) ----------------------------------------------------------------


def update_step(update_func: Callable[[list[Any], Any], Any]) -> Step:
    """update_state_by_key: partitions hold (key, state) pairs."""

    def step(state_part: list[Any], records: Iterator[Any]) -> Iterator[Any]:
        new_values: dict[Any, list[Any]] = {}
        for key, value in records:
            new_values.setdefault(key, []).append(value)
        for key, state in state_part:
            updated = update_func(new_values.pop(key, []), state)
            if updated is not None:
                yield key, updated
        for key, values in new_values.items():
            updated = update_func(values, None)
            if updated is not None:
                yield key, updated

    return step


def map_with_state_step(
    func: Callable[..., Any], with_time: bool, time_ms: int, timeout_ms: int | None
) -> Step:
    """map_with_state: a partition is one record, ``(entries, outputs)``, where entries
    maps key -> (state, last batch time with data) and outputs are the batch's returns."""
    batch_time = time_ms / 1000

    def step(state_part: list[Any], records: Iterator[Any]) -> list[Any]:
        entries: dict[Any, tuple[Any, int]] = dict(state_part[0][0]) if state_part else {}
        outputs: list[Any] = []
        state = State()
        for key, value in records:
            current = entries.get(key)
            if current is None:
                state._wrap(key, False, None)
            else:
                state._wrap(key, True, current[0])
            outputs.append(
                func(batch_time, key, value, state) if with_time else func(key, value, state)
            )
            if state._removed:
                entries.pop(key, None)
            elif state._updated or (state._defined and timeout_ms is not None):
                entries[key] = (state._value, time_ms)
        if timeout_ms is not None:
            threshold = time_ms - timeout_ms
            expired = [(k, s) for k, (s, last) in entries.items() if last < threshold]
            for key, value in expired:
                del entries[key]
                state._wrap(key, True, value, timing_out=True)
                outputs.append(
                    func(batch_time, key, None, state) if with_time else func(key, None, state)
                )
        return [(entries, outputs)]

    return step


def initial_entries(time_ms: int) -> Callable[[Iterator[Any]], list[Any]]:
    """map_with_state's initial state: (key, state) pairs into one entries record; their
    clock starts at the first batch (as in Spark)."""

    def build(pairs: Iterator[Any]) -> list[Any]:
        return [({key: (state, time_ms) for key, state in pairs}, [])]

    return build


def last_per_key(pairs: Iterator[Any]) -> Iterable[Any]:
    """An initial RDD with a key twice keeps its last state."""
    return dict(pairs).items()


def outputs_of(record: Any) -> list[Any]:
    return record[1]


def snapshot_pairs(record: Any) -> Iterator[Any]:
    return ((key, entry[0]) for key, entry in record[0].items())
