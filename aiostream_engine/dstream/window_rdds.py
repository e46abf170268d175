"""RDDs of the window streams whose data is computed once and then held without lineage:
the previous window's result (``MaterializedRDD``) and each batch's reduce inside the
window's span (``SpanBatchRDD``, held pickled so the driver's garbage collector does not
walk every record of the span on every slide)."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..rdd.core import RDD, UnionRDD
from ..rdd.tasks import RecordsInput, Stage, TaskPlan

if TYPE_CHECKING:
    from ..executor.runner import TaskRunner

#: Given a window's partitions: the partitions to keep, and an error to raise (or None).
Check = Callable[[list[list[Any]]], Awaitable[tuple[list[list[Any]], BaseException | None]]]


class MaterializedRDD(RDD):
    """An RDD computed once; afterwards it keeps only its partitions and forgets its lineage.

    Window intermediates are these: window t's lineage reaches window t - S, whose lineage
    reaches t - 2S, ...; holding only partitions keeps memory bounded by the live keys.
    ``check`` (async, given the partitions) may replace them and report an error, raised
    once (checked inverse: the recomputed window replaces a wrong one).
    """

    def __init__(
        self,
        inner: RDD,
        name: str,
        check: Check | None = None,
        post: Callable[[list[list[Any]]], list[list[Any]]] | None = None,
    ) -> None:
        super().__init__(inner._runner, inner.num_partitions, name)
        self._inner: RDD | None = inner
        self._parts: list[list[Any]] | None = None
        self._lock: asyncio.Lock | None = None
        self._check = check
        self._post = post  # what the tasks returned -> this RDD's partitions

    @property
    def materialized(self) -> bool:
        return self._parts is not None

    async def apartitions(self) -> list[list[Any]]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._parts is None:
                assert self._inner is not None
                parts = await self._runner.run_tasks(await self._inner._plans(), self.name)
                if self._post is not None:
                    parts, self._post = self._post(parts), None
                check, self._check = self._check, None
                error = None
                if check is not None:
                    parts, error = await check(parts)
                self._parts, self._inner = parts, None
                if error is not None:
                    raise error
            return self._parts

    async def _plans(self) -> list[TaskPlan]:
        return [TaskPlan(RecordsInput(part)) for part in await self.apartitions()]

    async def _uncached_plans(self) -> list[TaskPlan]:
        return await self._plans()

    def cache(self) -> RDD:
        return self

    def unpersist(self, blocking: bool = False) -> RDD:
        return self  # its partitions go when the last reference to it does


# ---- a batch kept for the window's span: pickled partitions ---------------------------------


def pack_records(records: list[Any]) -> bytes:
    return pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_records(part: bytes | list[Any]) -> list[Any]:
    return pickle.loads(part) if isinstance(part, bytes) else part


def _pack_stage(_index: int, records: Iterator[Any]) -> list[bytes]:
    return [pack_records(list(records))]


@dataclass(frozen=True)
class PackedInput:
    """A task input whose records travel, and wait on the driver, pickled."""

    payload: bytes

    def open(self) -> Iterator[Any]:
        return iter(pickle.loads(self.payload))


class SpanBatchRDD(RDD):
    """One batch's reduced-by-key result, kept while it is in the window's span.

    Computed once; its partitions are then held pickled (packed in the task that computed
    them), so the driver's heap, and the garbage collector's work, do not grow with the
    window's length; a slide hands the bytes to the task that removes or adds them.
    """

    def __init__(self, inner: RDD, name: str) -> None:
        super().__init__(inner._runner, inner.num_partitions, name)
        self._inner: RDD | None = inner
        self._packed: list[bytes] | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def materialized(self) -> bool:
        return self._packed is not None

    @property
    def pending_lineage(self) -> RDD | None:
        """What computes it, while it has not been computed."""
        return self._inner if self._packed is None else None

    async def apacked(self) -> list[bytes]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._packed is None:
                assert self._inner is not None
                plans = [p.then(Stage("pack", _pack_stage)) for p in await self._inner._plans()]
                results = await self._runner.run_tasks(plans, self.name)
                self._packed, self._inner = [r[0] for r in results], None
            return self._packed

    def set_packed(self, packed: list[bytes]) -> None:
        """Computed by the slide that reduced it alongside the window."""
        if self._packed is None:
            self._packed, self._inner = packed, None

    async def apartitions(self) -> list[list[Any]]:
        return [unpack_records(part) for part in await self.apacked()]

    async def _plans(self) -> list[TaskPlan]:
        # A TaskPlan input is anything with open() -> records (tasks.execute_task).
        return [TaskPlan(PackedInput(part)) for part in await self.apacked()]  # type: ignore[arg-type]

    async def _uncached_plans(self) -> list[TaskPlan]:
        return await self._plans()

    def cache(self) -> RDD:
        return self

    def unpersist(self, blocking: bool = False) -> RDD:
        return self


def union_all(rdds: list[RDD], runner: TaskRunner) -> RDD:
    if not rdds:
        return runner.empty_rdd()
    return rdds[0] if len(rdds) == 1 else UnionRDD(rdds)


# ---- window() ---------------------------------------------------------------------------


