"""The Sink protocol: how an output operation hands one partition of one batch to a system.

A sink implements three coroutines, nothing else (as narrow as httpx's transports):

* ``open()``: acquire what writing needs (a connection pool, a client);
* ``write_partition(batch_time, partition_index, records)``: write one whole partition;
  raise to fail the attempt (the writer retries it), return only once it is durable;
* ``close()``: release it.

``open_per`` declares how often ``open`` runs:

* ``"worker"``: once per sink object, lazily before its first write, on the event loop that
  writes (see ``dstream.sink_output`` for why that is the driver's loop); the resource is
  shared by every partition write, concurrently, and kept across batches until
  ``aclose()``. Connection pools and MQTT clients live here: one per sink, never one per
  record or per batch.
* ``"task"``: each partition write (each attempt) gets its own shallow copy of the sink,
  opened before and closed after the write, the way Spark's ``ForeachWriter`` is
  deserialized once per task. For resources that must not be shared between concurrent
  writes.

``(batch_time, partition_index)`` identifies a write: a batch run again after a failure or
a crash writes the same partitions with the same identities, which an idempotent sink uses
to skip or overwrite (PostgreSQL stores a marker, the file sink replaces the file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

import anyio

from aiostream_engine.errors import StreamingError

OpenScope = Literal["worker", "task"]

# Lifecycle bookkeeping the writer keeps on a sink; never pickled or copied with it.
_OPEN = "_sink_is_open"
_LOCK = "_sink_open_lock"


class Sink(ABC):
    """Base class of every sink. Subclasses implement ``write_partition`` and, when they
    hold resources, ``open`` and ``close``; the lifecycle methods below are the writer's."""

    open_per: ClassVar[OpenScope] = "worker"

    @property
    def name(self) -> str:
        """How errors and job names refer to this sink; subclasses name their target."""
        return type(self).__name__

    async def open(self) -> None:
        """Acquire resources; see ``open_per`` for how often this runs."""
        return None

    @abstractmethod
    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        """Write all of ``records`` (one partition of the batch at ``batch_time`` seconds)."""

    async def close(self) -> None:
        """Release what ``open`` acquired."""
        return None

    async def begin_batch(self, batch_time: float, rdd: Any) -> None:
        """Called with the batch's RDD before its partitions are written (not after a
        failed attempt): a sink that needs the batch's lineage (the Kafka offset ranges
        behind each partition) reads it here."""
        return None

    def end_batch(self, batch_time: float) -> None:
        """Called once the batch's partition writes are over, written or failed."""
        return None

    # ---- lifecycle, driven by the writer (not meant to be overridden) -------------------

    @property
    def is_open(self) -> bool:
        """Whether ``open`` has run (and ``close`` has not) in this process."""
        return bool(self.__dict__.get(_OPEN))

    async def ensure_open(self) -> None:
        """Open once, however many partition writes ask at the same time."""
        if self.is_open:
            return
        lock = self.__dict__.setdefault(_LOCK, anyio.Lock())
        async with lock:
            if not self.is_open:
                await self.open()
                self.__dict__[_OPEN] = True

    async def aclose(self) -> None:
        """Close if open; idempotent. Shielded: a pool must not be left half-closed."""
        if self.__dict__.pop(_OPEN, False):
            with anyio.CancelScope(shield=True):
                await self.close()

    async def __aenter__(self) -> Self:
        """``async with sink:`` scopes the sink's lifetime: it still opens lazily, on the
        first write, and closes when the block exits."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(_OPEN, None)
        state.pop(_LOCK, None)
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class SinkWriteError(StreamingError):
    """A partition write failed on every attempt; fails the batch's output job."""

    def __init__(
        self, sink: str, batch_time: float, partition: int, attempts: int, cause: BaseException
    ) -> None:
        super().__init__(
            f"sink {sink}: partition {partition} of batch {batch_time:.3f} failed "
            f"{attempts} attempt(s); last error: {type(cause).__name__}: {cause}"
        )
        self.sink = sink
        self.batch_time = batch_time
        self.partition = partition
        self.attempts = attempts
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.sink, self.batch_time, self.partition, self.attempts, self.cause))


def batch_ms(batch_time: float) -> int:
    """A batch time as the integer milliseconds the engine uses inside (exact, hashable)."""
    return round(batch_time * 1000)
