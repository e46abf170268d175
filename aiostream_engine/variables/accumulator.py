"""``Accumulator``: tasks add to it, the driver reads it.

Inside a task, ``add`` adds to the task's own total, which goes back to the driver with the
task's result as a side output (``rdd.side_output``), on every backend. The driver merges
it when the task succeeds, so a failed attempt's additions are dropped and a retried task
counts once; a task run again later (an uncached RDD read by a second job) counts again,
as in Spark. On the driver (a ``foreachRDD`` function) ``add`` updates the value directly.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from ..rdd.side_output import SideChannels, SideOutput, emit_side, running_task_outputs

T = TypeVar("T")


class AccumulatorParam(Generic[T]):
    """How values combine: the ``zero`` of a value's type and ``addInPlace``."""

    def zero(self, value: T) -> T:
        """The neutral value for ``value``'s type."""
        raise NotImplementedError

    def addInPlace(self, value1: T, value2: T) -> T:
        """``value1`` plus ``value2``; may update and return ``value1``."""
        raise NotImplementedError


class AddingParam(AccumulatorParam[Any]):
    """Numbers (and anything with ``+``): zero is ``value * 0`` (0, 0.0, 0j)."""

    def zero(self, value: Any) -> Any:
        return value * 0 if isinstance(value, int | float | complex) else type(value)()

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        return value1 + value2


class _TaskTotal:
    """One accumulator's total within one task (sent back with the task's result)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return _TaskTotal, (self.value,)


#: The task whose totals ``_totals`` holds (its side-output list), and those totals.
_totals: ContextVar[tuple[list[SideOutput], dict[str, _TaskTotal]] | None] = ContextVar(
    "accumulator_totals", default=None
)
_ids = itertools.count()


class Accumulator(Generic[T]):
    """``sc.accumulator(0)``; tasks call ``acc.add(x)`` (or ``acc += x``), the driver reads
    ``acc.value``."""

    def __init__(self, value: T, param: AccumulatorParam[T], channels: SideChannels | None) -> None:
        self.id = f"{next(_ids)}"
        self.param = param
        self._value = value
        self._zero = param.zero(value)
        self._lock = threading.Lock()
        self._channel: int | None = None
        if channels is not None:
            self._channel = channels.register(_merger(weakref.ref(self)))
            weakref.finalize(self, channels.unregister, self._channel)

    def add(self, term: T) -> None:
        """Add ``term``: to this task's total inside a task, to the value on the driver."""
        outputs = running_task_outputs()
        if outputs is None:
            with self._lock:
                self._value = self.param.addInPlace(self._value, term)
            return
        total = self._task_total(outputs)
        total.value = self.param.addInPlace(total.value, term)

    def __iadd__(self, term: T) -> Accumulator[T]:
        self.add(term)
        return self

    @property
    def value(self) -> T:
        """The merged value (driver only, as in Spark)."""
        if running_task_outputs() is not None:
            raise RuntimeError("Accumulator.value cannot be accessed inside tasks")
        with self._lock:
            return self._value

    @value.setter
    def value(self, value: T) -> None:
        if running_task_outputs() is not None:
            raise RuntimeError("Accumulator.value cannot be set inside tasks")
        with self._lock:
            self._value = value

    def _task_total(self, outputs: list[SideOutput]) -> _TaskTotal:
        state = _totals.get()
        if state is None or state[0] is not outputs:  # the first addition of a new task
            state = (outputs, {})
            _totals.set(state)
        total = state[1].get(self.id)
        if total is None:
            if self._channel is None:
                raise RuntimeError("this accumulator was not made by a SparkContext: it "
                                   "cannot collect additions from tasks")
            total = state[1][self.id] = _TaskTotal(self.param.zero(self._zero))
            emit_side(SideOutput(self._channel, self.id, total))
        return total

    def _merge(self, output: SideOutput) -> None:
        with self._lock:
            self._value = self.param.addInPlace(self._value, output.value.value)

    def __reduce__(self) -> tuple[Any, ...]:
        return _in_task, (self.id, self._zero, self.param, self._channel)

    def __repr__(self) -> str:
        return f"Accumulator<id={self.id}, value={self._value}>"


def _merger(ref: weakref.ref[Accumulator[Any]]) -> Any:
    def merge(output: SideOutput) -> None:
        accumulator = ref()
        if accumulator is not None:
            accumulator._merge(output)

    return merge


def _in_task(
    accumulator_id: str, zero: Any, param: AccumulatorParam[Any], channel: int | None
) -> Accumulator[Any]:
    """An accumulator unpickled where a task runs: it only collects the task's additions."""
    accumulator: Accumulator[Any] = Accumulator.__new__(Accumulator)
    accumulator.id = accumulator_id
    accumulator.param = param
    accumulator._value = zero
    accumulator._zero = zero
    accumulator._lock = threading.Lock()
    accumulator._channel = channel
    return accumulator
