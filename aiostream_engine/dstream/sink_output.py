"""Writing each batch through a ``Sink``: ``dstream.write_to(sink)`` and ``write_rdd``.

Where partition writes run: on the driver's event loop, concurrently, with a bound.
The partitions are computed by the executor as usual (each partition's records are the
output of its task), collected, then each is handed to ``sink.write_partition`` as one
coroutine; at most ``max_concurrency`` of them are in flight.

Why not inside the worker tasks, as Spark's ``foreachPartition`` does:

* The sinks that matter here (asyncpg, aiomqtt) are asyncio libraries. Workers are
  synchronous processes running one task at a time; writing from a task would mean an event
  loop per task and a connection per task (the classic foreachRDD mistake, only per
  partition instead of per record), or a per-worker cache of loops and connections, which
  multiplies connections by workers and cannot enforce one bound across processes.
* One sink object on the driver owns one pool, opened once and reused across batches, so
  "connections <= pool size" and "in-flight writes <= max_concurrency" hold exactly, for
  every executor backend (process pool or a cluster), and no connection is ever shared
  between processes.
* Retries, backoff and the batch's failure are plain control flow around one coroutine.

The cost is that the output stream's records travel to the driver, as ``collect`` does.
Output streams are usually aggregates or alerts, small next to the input; a sink that
needs the work done per record on workers gets it with a ``map`` before ``write_to``.
Blocking work inside a sink (file I/O) goes to a thread with ``anyio.to_thread``.

Failure: a partition write that raises is retried ``retries`` times, waiting
``backoff * 2**attempt`` seconds between attempts; after the last one the output job
raises ``SinkWriteError`` naming the sink, the batch and the partition, and the scheduler
fails the batch through its normal path. Writes already in flight finish (a partition is
written whole or, for transactional sinks, not at all); no new partition starts.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..sinks.base import Sink, SinkWriteError
from .output import ForEachDStream

if TYPE_CHECKING:
    from ..conf import StreamingConf
    from ..rdd.core import RDD
    from .base import DStream


@dataclass(frozen=True)
class WritePolicy:
    """How partition writes run: the concurrency bound and the retry schedule."""

    max_concurrency: int = 4
    retries: int = 3
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")

    @classmethod
    def from_conf(
        cls,
        conf: StreamingConf,
        max_concurrency: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ) -> WritePolicy:
        """Explicit arguments win; what is left comes from the context's configuration."""
        return cls(
            conf.sink_max_concurrency if max_concurrency is None else max_concurrency,
            conf.sink_max_retries if retries is None else retries,
            conf.sink_retry_backoff if backoff is None else backoff,
        )

    def delays(self) -> list[float]:
        """Seconds to wait before each retry: exponential from ``backoff``."""
        return [self.backoff * 2**attempt for attempt in range(self.retries)]


async def write_partitions(
    sink: Sink, batch_time: float, partitions: Sequence[Sequence[Any]], policy: WritePolicy
) -> None:
    """Write every partition (index i is ``partitions[i]``), at most
    ``policy.max_concurrency`` at once; raise the first failed partition's error."""
    pending = iter(enumerate(partitions))
    failures: list[SinkWriteError] = []

    async def lane() -> None:
        # Each lane writes one partition at a time, so the lanes are the bound.
        for index, records in pending:
            if failures:  # the batch has failed: start nothing more, let in-flight finish
                return
            try:
                await _write_with_retries(sink, batch_time, index, records, policy)
            except SinkWriteError as exc:
                failures.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(min(policy.max_concurrency, len(partitions))):
            tg.start_soon(lane)
    if failures:
        raise min(failures, key=lambda f: f.partition)


async def write_rdd(
    sink: Sink, batch_time: float, rdd: RDD, policy: WritePolicy | None = None
) -> None:
    """Compute ``rdd`` and write its partitions; for use inside ``foreach_rdd``::

        async def output(time, rdd):
            await write_rdd(sink, time, rdd)

        stream.foreach_rdd(output)
    """
    partitions = await rdd.acollect_partitions()
    await sink.begin_batch(batch_time, rdd)
    try:
        await write_partitions(sink, batch_time, partitions, policy or WritePolicy())
    finally:
        sink.end_batch(batch_time)


async def _write_with_retries(
    sink: Sink, batch_time: float, index: int, records: Sequence[Any], policy: WritePolicy
) -> None:
    delays = policy.delays()
    for attempt in range(len(delays) + 1):
        try:
            await _write_once(sink, batch_time, index, records)
            return
        except Exception as exc:  # any sink error is retried, then reported with its cause
            if attempt == len(delays):
                raise SinkWriteError(sink.name, batch_time, index, attempt + 1, exc) from exc
        await anyio.sleep(delays[attempt])


async def _write_once(sink: Sink, batch_time: float, index: int, records: Sequence[Any]) -> None:
    if sink.open_per == "task":
        own = copy.copy(sink)
        await own.ensure_open()
        try:
            await own.write_partition(batch_time, index, records)
        finally:
            await own.aclose()
    else:
        await sink.ensure_open()
        await sink.write_partition(batch_time, index, records)


class SinkWriter:
    """The output function ``write_to`` registers: ``await writer(time, rdd)`` per batch."""

    def __init__(self, sink: Sink, policy: WritePolicy) -> None:
        self.sink = sink
        self.policy = policy

    async def __call__(self, time: float, rdd: RDD) -> None:
        await write_rdd(self.sink, time, rdd, self.policy)


class SinkOutputDStream(ForEachDStream):
    """The output stream of ``write_to``. ``stop()`` closes the sink (pools, clients)."""

    def __init__(self, parent: DStream, sink: Sink, policy: WritePolicy) -> None:
        if not isinstance(sink, Sink):
            raise TypeError(f"write_to needs a Sink, got {type(sink).__name__}")
        self.writer = SinkWriter(sink, policy)
        super().__init__(parent, self.writer, f"write_to({sink.name})")

    async def stop(self) -> None:
        await self.writer.sink.aclose()
