"""RDDs of the window streams whose data is computed once and then held without lineage:
the previous window's result (``MaterializedRDD``) and each batch's reduce inside the
window's span (``SpanBatchRDD``). Both are cached as blocks where their tasks ran
(``executor.block_store``): a slide reads them there, and the driver holds only refs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..rdd.core import RDD, UnionRDD
from ..rdd.tasks import BlockInput, RecordsInput, TaskPlan

if TYPE_CHECKING:
    from ..executor.block_store import BlockRef, CachedBlocks
    from ..executor.runner import TaskRunner

#: Given a window's partitions: the partitions to keep, and an error to raise (or None).
Check = Callable[[list[list[Any]]], Awaitable[tuple[list[list[Any]], BaseException | None]]]


class MaterializedRDD(RDD):
    """An RDD computed once; afterwards it keeps only its blocks and forgets its lineage.

    Window intermediates are these: window t's lineage reaches window t - S, whose lineage
    reaches t - 2S, ...; holding only blocks keeps memory bounded by the live keys.
    ``check`` (async, given the partitions) may replace them and report an error, raised
    once (checked inverse: the recomputed window replaces a wrong one). ``on_computed``
    runs once the blocks are stored.
    """

    def __init__(
        self,
        inner: RDD,
        name: str,
        check: Check | None = None,
        on_computed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(inner._runner, inner.num_partitions, name)
        self._inner: RDD | None = inner
        self._check = check
        self._on_computed = on_computed
        self._error: BaseException | None = None
        self.cache()

    async def _uncached_plans(self) -> list[TaskPlan]:
        assert self._inner is not None, "a computed window never recomputes"
        return await self._inner._plans()

    async def _compute_blocks(self) -> CachedBlocks:
        blocks = await super()._compute_blocks()
        if self._on_computed is not None:
            self._on_computed()
        if self._check is not None:
            fetched = [TaskPlan(BlockInput(ref)) for ref in blocks.refs]
            parts = await self._runner.run_tasks(fetched, f"{self.name} (check)")
            kept, self._error = await self._check(parts)
            if self._error is not None:  # later slides go on from the recomputed window
                blocks = await self._runner.store([TaskPlan(RecordsInput(p)) for p in kept], self.name)
        return blocks

    async def _cached_blocks(self) -> list[BlockRef]:
        refs = await super()._cached_blocks()
        error, self._error = self._error, None
        if error is not None:
            raise error
        return refs

    def _forget_lineage(self) -> None:
        self._inner = self._check = self._on_computed = None

    def unpersist(self, blocking: bool = False) -> RDD:
        return self  # it cannot recompute: its blocks go when the last reference to it does


class SpanBatchRDD(RDD):
    """One batch's reduced-by-key result, kept as blocks while it is in the window's span.

    Its blocks are named up front (``targets``) so that the slide that reduces the newest
    batch alongside the window can store it from the same task (then ``set_computed``);
    otherwise it computes on first use.
    """

    def __init__(self, inner: RDD, name: str) -> None:
        super().__init__(inner._runner, inner.num_partitions, name)
        self._inner: RDD | None = inner
        self._targets = inner._runner.new_blocks(inner.num_partitions, name)
        self.cache()

    @property
    def pending_lineage(self) -> RDD | None:
        """What computes it, while it has not been computed."""
        return self._inner if self._blocks is None else None

    @property
    def targets(self) -> list[BlockRef]:
        return self._targets.refs

    def set_computed(self) -> None:
        """A slide stored every partition into ``targets``."""
        if self._blocks is None:
            self._blocks = self._targets
            self._forget_lineage()

    async def _uncached_plans(self) -> list[TaskPlan]:
        assert self._inner is not None, "a computed batch never recomputes"
        return await self._inner._plans()

    async def _compute_blocks(self) -> CachedBlocks:
        return await self._runner.store(await self._uncached_plans(), self.name, self._targets)

    def _forget_lineage(self) -> None:
        self._inner = None

    def unpersist(self, blocking: bool = False) -> RDD:
        return self


def union_all(rdds: list[RDD], runner: TaskRunner) -> RDD:
    if not rdds:
        return runner.empty_rdd()
    return rdds[0] if len(rdds) == 1 else UnionRDD(rdds)


# ---- window() ---------------------------------------------------------------------------


