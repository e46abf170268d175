"""Side outputs: what a task reports to the driver besides its records.

A stage running inside a task (a decode stage's dead letters, see ``decoding``) calls
``emit_side(SideOutput(channel, key, value))``. ``execute_task`` collects them and returns
its records as a ``TaskOutput``, a list that carries them; whatever the backend (in
process, worker processes, Dask), the result object travels back as it is, and the
driver's ``TaskRunner`` hands each side output to the channel registered under its id
(``SideChannels``).

Side outputs travel only with a task's successful result: the side outputs of a failed
attempt are never seen, so a retried task reports once. The same task may still run more
than once (two jobs reading one RDD): a channel must treat a second report for a key as
the same fact again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_COLLECTED: ContextVar[list[SideOutput] | None] = ContextVar("side_outputs", default=None)


@dataclass(frozen=True)
class SideOutput:
    """One report: ``channel`` is the id a driver-side channel registered under; ``key``
    and ``value`` are the channel's own (plain picklable data)."""

    channel: int
    key: Any
    value: Any


class TaskOutput(list[Any]):
    """A task's records, with the side outputs its stages emitted (in order)."""

    side: tuple[SideOutput, ...] = ()

    def __init__(self, records: list[Any], side: tuple[SideOutput, ...]) -> None:
        super().__init__(records)
        self.side = side

    def __reduce__(self) -> tuple[Any, ...]:
        return TaskOutput, (list(self), self.side)


def emit_side(output: SideOutput) -> None:
    """Report ``output`` with the running task's result (call it from inside a stage)."""
    collected = _COLLECTED.get()
    if collected is None:
        raise RuntimeError("emit_side called outside a running task")
    collected.append(output)


def running_task_outputs() -> list[SideOutput] | None:
    """The side outputs of the task running here so far, or None outside a task (code that
    behaves differently in a task: an accumulator adds to the task's own total)."""
    return _COLLECTED.get()


@contextmanager
def collecting() -> Iterator[list[SideOutput]]:
    """Collect the side outputs emitted while the block runs (one task)."""
    collected: list[SideOutput] = []
    token = _COLLECTED.set(collected)
    try:
        yield collected
    finally:
        _COLLECTED.reset(token)


def with_side(records: list[Any], side: list[SideOutput]) -> list[Any]:
    """``records``, carrying ``side`` when there is any."""
    return TaskOutput(records, tuple(side)) if side else records


SideChannel = Callable[[SideOutput], None]


class SideChannels:
    """The driver's registry of channels side outputs are delivered to, by id."""

    def __init__(self) -> None:
        self._channels: dict[int, SideChannel] = {}
        self._ids = itertools.count(1)

    def register(self, channel: SideChannel) -> int:
        """Deliver side outputs sent to the returned id to ``channel`` (on the event loop)."""
        channel_id = next(self._ids)
        self._channels[channel_id] = channel
        return channel_id

    def unregister(self, channel_id: int) -> None:
        self._channels.pop(channel_id, None)

    def deliver(self, result: list[Any]) -> None:
        """Hand a task result's side outputs, if any, to their channels."""
        for output in getattr(result, "side", ()):
            channel = self._channels.get(output.channel)
            if channel is not None:
                channel(output)
