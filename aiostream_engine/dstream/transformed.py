"""Streams computed from other streams' RDDs of the same batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..rdd.core import RDD, UnionRDD
from .base import DStream

if TYPE_CHECKING:
    from ..context import StreamingContext


class TransformedDStream(DStream):
    """RDD at t = ``func([parent RDD at t, ...], t)``; a parent with no RDD gives an empty one."""

    def __init__(
        self,
        ssc: StreamingContext,
        parents: list[DStream],
        name: str,
        func: Callable[[list[RDD], int], RDD],
    ) -> None:
        super().__init__(ssc, parents, name)
        self._func = func

    def compute(self, time_ms: int) -> RDD | None:
        rdds = [p.get_or_compute(time_ms) or self._runner_rdd_empty() for p in self.dependencies]
        result = self._func(rdds, time_ms)
        if not isinstance(result, RDD):
            raise TypeError(f"{self.name} must return an RDD, got {type(result).__name__}")
        return result


class UnionDStream(DStream):
    def __init__(self, ssc: StreamingContext, parents: list[DStream]) -> None:
        slides = {p.slide_ms for p in parents}
        if len(slides) != 1:
            raise ValueError("union: every stream must have the same slide duration")
        super().__init__(ssc, parents, "union")

    def compute(self, time_ms: int) -> RDD | None:
        rdds = [r for p in self.dependencies if (r := p.get_or_compute(time_ms)) is not None]
        if not rdds:
            return None
        return rdds[0] if len(rdds) == 1 else UnionRDD(rdds)
