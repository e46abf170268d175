"""StateSpec, and the streams behind update_state_by_key and map_with_state.

Each state stream keeps the state RDD of the batches it may still need (``_states``, time
-> RDD; see ``stateful.StateRDD``): the state at t is built from the state at t - slide, or,
after a failed or skipped batch, from the newest earlier one; the first batch starts from
the initial state. After each batch, states older than the remember duration are dropped,
except the newest.

Checkpoint hooks (used by ``recovery``): ``checkpoint_data`` returns the state of one batch
as plain data (partitions of plain tuples, the batch time, the partition count);
``restore_checkpoint_data`` puts it back as that batch's state, so the batch after it
continues from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..hashing import stable_hash
from ..rdd.core import RDD
from ..timeutil import to_ms
from .base import DStream
from .functions import takes_time
from .stateful import (
    State,
    StateRDD,
    Step,
    initial_entries,
    last_per_key,
    map_with_state_step,
    outputs_of,
    snapshot_pairs,
    update_step,
)

__all__ = ["MapWithStateDStream", "State", "StateDStream", "StateSpec", "StateSnapshotDStream"]

CHECKPOINT_VERSION = 1


def _check_partitions(num_partitions: int | None, what: str) -> int | None:
    if num_partitions is not None and (
        not isinstance(num_partitions, int) or isinstance(num_partitions, bool) or num_partitions < 1
    ):
        raise ValueError(f"{what}: num_partitions must be a positive int, got {num_partitions!r}")
    return num_partitions


class StateSpec:
    """What map_with_state runs: ``func(key, value, state) -> output`` (or
    ``func(batch_time, key, value, state)``), an optional ``timeout`` in seconds (a key
    without data for longer than that times out), an ``initial_state`` (an RDD or iterable of
    (key, state) pairs), the state's ``num_partitions`` and its checkpoint ``name``."""

    def __init__(
        self,
        func: Callable[..., Any],
        timeout: float | None = None,
        initial_state: RDD | Iterable[tuple[Any, Any]] | None = None,
        num_partitions: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"StateSpec: func must be callable, got {type(func).__name__}")
        self.func = func
        self.timeout = timeout
        self.timeout_ms: int | None = None
        if timeout is not None:
            self.timeout_ms = to_ms(timeout, "map_with_state timeout")
            if self.timeout_ms <= 0:
                raise ValueError(f"map_with_state timeout must be > 0 seconds, got {timeout!r}")
        self.initial_state = initial_state
        self.num_partitions = _check_partitions(num_partitions, "StateSpec")
        self.name = name

    def __repr__(self) -> str:
        return (
            f"StateSpec({getattr(self.func, '__name__', self.func)!r}, timeout={self.timeout}, "
            f"num_partitions={self.num_partitions}, name={self.name!r})"
        )


class _KeyedStateDStream(DStream):
    """What both state streams share: the state RDD per batch, pruning, checkpoint hooks."""

    requires_checkpoint = True

    def __init__(
        self,
        parent: DStream,
        operator: str,
        func: Callable[..., Any],
        num_partitions: int | None,
        initial: RDD | Iterable[tuple[Any, Any]] | None,
        state_name: str | None,
    ) -> None:
        parent._check(func, operator)
        _check_partitions(num_partitions, operator)
        super().__init__(parent.context, [parent], operator)
        self.num_partitions = num_partitions  # as given: part of the checkpoint signature
        self.state_name = state_name
        runner = parent.context.spark_context
        self._partitions: int = num_partitions or runner.default_parallelism
        if initial is not None and not isinstance(initial, RDD):
            initial = runner.parallelize_once(initial)
        self._initial: RDD | None = initial
        self._states: dict[int, RDD] = {}

    # ---- what a subclass provides ----------------------------------------------------------

    def _step(self, time_ms: int) -> Step:
        raise NotImplementedError

    def _initial_state(self, time_ms: int) -> RDD:
        raise NotImplementedError

    def _to_plain(self, parts: list[list[Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def _from_plain(self, data: dict[str, Any]) -> list[list[Any]]:
        raise NotImplementedError

    # ---- the state per batch ---------------------------------------------------------------

    def _state_at(self, time_ms: int) -> RDD:
        state = self._states.get(time_ms)
        if state is not None:
            return state
        prev = self._states.get(time_ms - self.slide_ms)
        if prev is None:
            earlier = [t for t in self._states if t < time_ms]
            prev = self._states[max(earlier)] if earlier else self._initial_state(time_ms)
        new = self.dependencies[0].get_or_compute(time_ms) or self._runner_rdd_empty()
        state = StateRDD(prev, new, self._partitions, self._step(time_ms), self.name)
        self._states[time_ms] = state
        return state

    def clear_metadata(self, time_ms: int) -> None:
        super().clear_metadata(time_ms)
        oldest = time_ms - self.remember_ms
        newest = max(self._states, default=None)
        for t in [t for t in self._states if t <= oldest and t != newest]:
            self._states.pop(t).unpersist()

    def state_size(self) -> int | None:
        """Keys in the newest state computed so far (None before the first); for the UI."""
        for time_ms in sorted(self._states, reverse=True):
            blocks = self._states[time_ms]._blocks
            if blocks is not None and blocks.sizes is not None:
                return sum(blocks.sizes)
        return None

    def _empty_partitions(self) -> RDD:
        return self._ssc.spark_context.from_partitions(
            [[] for _ in range(self._partitions)], f"{self.name} (empty state)"
        )

    # ---- checkpoint hooks ------------------------------------------------------------------

    async def checkpoint_data(self, time_ms: int | None = None) -> dict[str, Any] | None:
        """The state after batch ``time_ms`` (default: the newest batch generated so far)
        as plain picklable data; None before any batch."""
        if time_ms is None:
            if not self._states:
                return None
            time_ms = max(self._states)
        parts = await self._state_at(time_ms)._materialize()
        return {
            "version": CHECKPOINT_VERSION,
            "operator": self.name,
            "time_ms": time_ms,
            "num_partitions": len(parts),
            **self._to_plain(parts),
        }

    def restore_checkpoint_data(self, data: dict[str, Any] | None) -> None:
        """Make ``data`` (from ``checkpoint_data``) the state of its batch; the next batch
        continues from it. Restoring into more or fewer partitions re-hashes the keys."""
        if data is None:
            return
        if data.get("operator") != self.name or data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{self.name}: cannot restore checkpoint data of {data.get('operator')!r} "
                f"(version {data.get('version')!r})"
            )
        parts = self._from_plain(data)
        rdd = self._ssc.spark_context.from_partitions(parts, f"{self.name} (restored)").cache()
        for old in self._states.values():
            old.unpersist()
        self._states = {data["time_ms"]: rdd}


def _rehash(pairs: Iterable[Any], num_partitions: int) -> list[list[Any]]:
    parts: list[list[Any]] = [[] for _ in range(num_partitions)]
    for pair in pairs:
        parts[stable_hash(pair[0]) % num_partitions].append(pair)
    return parts


class StateDStream(_KeyedStateDStream):
    """update_state_by_key: its RDD at t is the state after batch t, (key, state) pairs."""

    def __init__(
        self,
        parent: DStream,
        update_func: Callable[[list[Any], Any], Any],
        num_partitions: int | None,
        initial_rdd: RDD | Iterable[tuple[Any, Any]] | None,
        state_name: str | None,
    ) -> None:
        super().__init__(
            parent, "update_state_by_key", update_func, num_partitions, initial_rdd, state_name
        )
        self._update_func = update_func

    def compute(self, time_ms: int) -> RDD | None:
        return self._state_at(time_ms)

    def _step(self, time_ms: int) -> Step:
        return update_step(self._update_func)

    def _initial_state(self, time_ms: int) -> RDD:
        if self._initial is None:
            return self._empty_partitions()
        return self._initial.partition_by(self._partitions).map_partitions(last_per_key)

    def _to_plain(self, parts: list[list[Any]]) -> dict[str, Any]:
        return {"partitions": [[(k, s) for k, s in part] for part in parts]}

    def _from_plain(self, data: dict[str, Any]) -> list[list[Any]]:
        parts = [list(part) for part in data["partitions"]]
        if len(parts) != self._partitions:
            parts = _rehash((pair for part in parts for pair in part), self._partitions)
        return parts


class MapWithStateDStream(_KeyedStateDStream):
    """map_with_state: its RDD at t holds what the function returned in batch t;
    ``state_snapshots()`` gives the state after each batch."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        stateSnapshots: Callable[..., DStream]
    # end of PySpark's names

    def __init__(self, parent: DStream, spec: StateSpec) -> None:
        super().__init__(
            parent, "map_with_state", spec.func, spec.num_partitions, spec.initial_state, spec.name
        )
        self.spec = spec
        self.timeout_ms = spec.timeout_ms
        self._with_time = takes_time(spec.func, 3)

    def compute(self, time_ms: int) -> RDD | None:
        return self._state_at(time_ms).flat_map(outputs_of)

    def state_snapshots(self) -> DStream:
        """Every (key, state) after each batch."""
        return StateSnapshotDStream(self)

    def _step(self, time_ms: int) -> Step:
        return map_with_state_step(self.spec.func, self._with_time, time_ms, self.timeout_ms)

    def _initial_state(self, time_ms: int) -> RDD:
        if self._initial is None:
            return self._ssc.spark_context.from_partitions(
                [[({}, [])] for _ in range(self._partitions)], f"{self.name} (empty state)"
            )
        return self._initial.partition_by(self._partitions).map_partitions(
            initial_entries(time_ms)
        )

    def _to_plain(self, parts: list[list[Any]]) -> dict[str, Any]:
        records = [part[0] if part else ({}, []) for part in parts]
        return {
            # (key, state, last batch time with data) per partition
            "partitions": [[(k, s, last) for k, (s, last) in entries.items()] for entries, _ in records],
            # what the batch's function calls returned, per partition
            "outputs": [list(outputs) for _, outputs in records],
        }

    def _from_plain(self, data: dict[str, Any]) -> list[list[Any]]:
        parts = [[(k, (s, last)) for k, s, last in part] for part in data["partitions"]]
        outputs = [list(out) for out in data.get("outputs") or [[] for _ in parts]]
        if len(parts) != self._partitions:
            parts = _rehash((pair for part in parts for pair in part), self._partitions)
            outputs = [[x for out in outputs for x in out]] + [[] for _ in parts[1:]]
        return [[(dict(part), out)] for part, out in zip(parts, outputs, strict=True)]


class StateSnapshotDStream(DStream):
    """Every (key, state) of a map_with_state stream after each batch."""

    def __init__(self, parent: MapWithStateDStream) -> None:
        super().__init__(parent.context, [parent], "state_snapshots")

    def compute(self, time_ms: int) -> RDD | None:
        parent = self.dependencies[0]
        assert isinstance(parent, MapWithStateDStream)
        return parent._state_at(time_ms).flat_map(snapshot_pairs)

