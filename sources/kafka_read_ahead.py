"""Read-ahead for the direct stream: a worker reads and decodes its partitions' records
while the batch interval runs, so that a batch's tasks find them ready at the cut.

Spark's direct stream fetches a batch's ranges only after the batch is cut, so a record's
end-to-end latency is its wait for the cut plus the fetch, the decode and the rest of the
task. With read-ahead, the worker that reads a Kafka partition keeps reading it between
batches (a background thread of its own, with its own event loop and Kafka client) and
runs the stream's decoders on what arrives, keeping the decoded records in order with
their offsets; the next task for that partition, sent to the same worker (the task's
placement is the partition's), takes the records of its range from that buffer and
fetches nothing. The work left after the cut is the part of the range not yet read plus
the user's own stages: at half the sustainable rate on this 2-core machine (225,000 W2
readings/s, broker and load generator on the same cores; bench/results/kafka_ingest.md),
batch processing p50 0.13-0.18 s against 0.45 s fetching after the cut, and p99 end-to-end
latency 1.24 s against 1.62 s. It costs CPU, about half as much again for the engine at
that rate (0.78-0.84 of a core against 0.54): its Fetches are smaller and more frequent
than a batch's.

It is a cache, never a source of truth: the driver still cuts every range, and a task
uses the buffer only when it holds the range from its first offset on. Otherwise (the
first batch, a replayed or retried range, a range the buffer skipped, a read-ahead that
hit a broker error) the task fetches its range itself, as without read-ahead, with every
error and retry of that path, and the read-ahead starts again at the range's end. The
decoders must be what Spark's are, functions of the record: decoding ahead then gives the
records and dead letters the task would have made. A buffer stops reading at
``kafka_read_ahead_records`` records (so it holds at most that plus one Fetch's worth); a
longer range takes what is buffered and fetches the rest. A read-ahead no task has used
for ``IDLE_SECONDS`` ends and drops its buffer.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.client import AIOKafkaClient

from aiostream_engine.sources.kafka_fetch import (
    KafkaRangeInput,
    RecordDecoding,
    new_client,
    one_fetch,
)
from aiostream_engine.sources.kafka_params import ClientSettings
from aiostream_engine.sources.kafka_records import DecodedChunk, FetchedRecords
from aiostream_engine.sources.kafka_types import OffsetRange

#: How long the broker may hold a read-ahead Fetch when it has nothing new.
WAIT_MS = 100
#: A Fetch that brought fewer records than this is followed by a pause of ``PACE`` seconds
#: (cut short when a task waits): at a few hundred records a Fetch, the requests' own cost
#: (broker and client) would be most of the read-ahead's work.
PACE_RECORDS = 10_000
PACE = 0.05
#: Seconds a read-ahead lives without a task taking from it.
IDLE_SECONDS = 60.0
#: The end of a read-ahead's range: it reads on as long as the log grows.
END_OF_LOG = 1 << 62


@dataclass(frozen=True)
class ReadAhead:
    """What a direct-stream task asks of its worker's read-ahead: ``stream`` names the
    stream (unique per context), ``decoding`` is its decoders, ``max_records`` the buffer's
    bound per partition."""

    stream: str
    decoding: RecordDecoding
    max_records: int

    def open(self, task: KafkaRangeInput) -> Iterator[Any]:
        """The task's raw items: its range's decoded chunks from the read-ahead, followed,
        where the buffer did not hold all of it, by the rest fetched by the task."""
        wanted = task.offset_range
        reader = _registry().reader(self, task.settings, wanted.topic, wanted.partition)
        chunks, reached = reader.take(wanted, task.fetch_timeout)
        if reached >= wanted.until_offset:
            return iter(chunks)
        rest = task.for_range(wanted._replace(from_offset=reached))
        return iter([*chunks, *rest.fetch()])


@dataclass
class _Buffer:
    """A read-ahead's decoded records from ``start`` to ``position`` (exclusive), in
    chunks; ``generation`` changes whenever a task moves it (fetches in flight are then
    dropped)."""

    start: int = -1
    position: int = -1
    chunks: deque[DecodedChunk] = field(default_factory=deque)
    records: int = 0
    generation: int = 0
    failed: BaseException | None = None

    def restart_at(self, offset: int) -> None:
        self.start = self.position = offset
        self.chunks.clear()
        self.records = 0
        self.generation += 1
        self.failed = None

    def take_until(self, until: int) -> list[DecodedChunk]:
        """The buffered chunks before ``until`` (the last one split there)."""
        taken: list[DecodedChunk] = []
        while self.chunks and self.chunks[0].first_offset < until:
            chunk = self.chunks.popleft()
            if chunk.next_offset > until:
                head, tail = chunk.split(until)
                taken.append(head)
                self.chunks.appendleft(tail)
                self.records -= len(head.records)
                break
            taken.append(chunk)
            self.records -= len(chunk.records)
        self.start = min(until, self.position)
        return taken


class _PartitionReader:
    """One partition's read-ahead; its loop runs on the registry's thread."""

    def __init__(self, registry: _Registry, spec: ReadAhead, settings: ClientSettings,
                 topic: str, partition: int) -> None:
        self.registry, self.spec, self.settings = registry, spec, settings
        self.topic, self.partition = topic, partition
        self.buffer = _Buffer()
        self.changed = threading.Condition()
        self.wake: asyncio.Event | None = None  # set (on the loop) when there is room again
        self.running = False
        self.last_used = time.monotonic()

    def take(self, wanted: OffsetRange, timeout: float) -> tuple[list[DecodedChunk], int]:
        """The decoded chunks of ``wanted`` the read-ahead holds and the offset they reach
        (``wanted.from_offset`` when it holds none of it); the read-ahead then goes on
        from ``wanted``'s end."""
        deadline = time.monotonic() + timeout
        with self.changed:
            self.last_used = time.monotonic()
            b = self.buffer
            if 0 <= wanted.until_offset <= b.start and b.failed is None:
                return [], wanted.from_offset  # read again (another output, a retry): as it was
            if b.start != wanted.from_offset or b.failed is not None:
                b.restart_at(wanted.until_offset)  # not ours to serve: the task fetches it all
                self._ensure_running()
                return [], wanted.from_offset
            self._ensure_running()
            self._room()  # a pacing reader reads now
            while (b.position < wanted.until_offset and b.records < self.spec.max_records
                   and b.failed is None and (left := deadline - time.monotonic()) > 0):
                self.changed.wait(left)
            if b.start != wanted.from_offset:  # moved by a task of another batch meanwhile
                return [], wanted.from_offset
            reached = min(b.position, wanted.until_offset)
            taken = b.take_until(reached)
            if reached < wanted.until_offset:
                b.restart_at(wanted.until_offset)
            self._room()
            return taken, reached

    def _ensure_running(self) -> None:
        if not self.running:
            self.running = True
            self.registry.start(self)

    def _room(self) -> None:
        wake, loop = self.wake, self.registry.loop
        if wake is not None and loop is not None:
            loop.call_soon_threadsafe(wake.set)

    async def run(self, client: AIOKafkaClient) -> None:
        """Fetch and decode from the buffer's position until idle (or a failure: the next
        task then fetches for itself and starts the read-ahead again)."""
        self.wake = asyncio.Event()
        try:
            while time.monotonic() - self.last_used < IDLE_SECONDS:
                with self.changed:
                    b = self.buffer
                    full = b.records >= self.spec.max_records
                    generation, position = b.generation, b.position
                if full or position < 0:
                    self.wake.clear()
                    await _wait(self.wake, WAIT_MS / 1000)
                    continue
                wanted = OffsetRange(self.topic, self.partition, position, END_OF_LOG)
                try:
                    fetched = await one_fetch(client, self.settings, wanted, WAIT_MS)
                except Exception as exc:  # the task's own fetch reports it, if it persists
                    with self.changed:
                        if b.generation == generation:
                            b.failed = exc
                        self.changed.notify_all()
                    return
                chunks = self._decode(fetched)
                got = sum(len(c.records) for c in chunks)
                with self.changed:
                    if b.generation == generation:
                        b.chunks.extend(chunks)
                        b.records += got
                        b.position = max(b.position, fetched.until_offset)
                        self.changed.notify_all()
                if got < PACE_RECORDS:
                    self.wake.clear()
                    await _wait(self.wake, PACE)
        finally:
            with self.changed:
                if self.buffer.failed is None:  # idle: the buffer goes, a task starts afresh
                    self.buffer.restart_at(-1)
                self.running = False
                self.changed.notify_all()

    def _decode(self, fetched: FetchedRecords) -> list[DecodedChunk]:
        """One chunk per record batch, the chunks contiguous from the fetch's start to its
        end (offsets without a record, markers or compaction, go to the chunk before)."""
        decoding, chunks, start = self.spec.decoding, [], fetched.from_offset
        for batch in fetched.record_batches():
            offsets: list[int] = []
            dead: list[Any] = []
            records = decoding.records(_noting(batch, offsets), dead, self.topic, self.partition)
            if not offsets:
                continue
            end = offsets[-1] + 1
            if dead:  # the offsets kept are those of the records decoded
                refused = {d.offset for d in dead}
                offsets = [o for o in offsets if o not in refused]
            chunks.append(DecodedChunk(start, end, offsets, records, dead))
            start = end
        if chunks:
            chunks[-1] = dataclasses.replace(chunks[-1], next_offset=fetched.until_offset)
        return chunks


def _noting(batch: Any, offsets: list[int]) -> Iterator[Any]:
    note = offsets.append
    for record in batch:
        note(record.offset)
        yield record


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


class _Registry:
    """This process's read-aheads, their thread and event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.readers: dict[tuple[str, ClientSettings, str, int], _PartitionReader] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: dict[ClientSettings, AIOKafkaClient] = {}

    def reader(
        self, spec: ReadAhead, settings: ClientSettings, topic: str, partition: int
    ) -> _PartitionReader:
        key = (spec.stream, settings, topic, partition)
        with self.lock:
            reader = self.readers.get(key)
            if reader is None:
                reader = self.readers[key] = _PartitionReader(self, spec, settings, topic, partition)
            return reader

    def start(self, reader: _PartitionReader) -> None:
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                threading.Thread(target=self.loop.run_forever, name="kafka-read-ahead",
                                 daemon=True).start()
            asyncio.run_coroutine_threadsafe(self._run(reader), self.loop)

    async def _run(self, reader: _PartitionReader) -> None:
        try:
            client = self.clients.get(reader.settings)
            if client is None:
                client = self.clients[reader.settings] = await new_client(reader.settings)
            await reader.run(client)
        except Exception as exc:  # no client: the tasks fetch for themselves
            with reader.changed:
                reader.buffer.failed = exc
                reader.running = False
                reader.changed.notify_all()

    def close(self) -> None:
        loop = self.loop
        if loop is None:
            return

        async def closing() -> None:
            readers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for client in self.clients.values():
                await client.close()

        try:
            asyncio.run_coroutine_threadsafe(closing(), loop).result(5)
        except Exception:  # noqa: S110 - at exit, brokers may be gone: nothing to report
            pass
        loop.call_soon_threadsafe(loop.stop)


_the_registry: _Registry | None = None
_registry_lock = threading.Lock()


def _registry() -> _Registry:
    global _the_registry
    with _registry_lock:
        if _the_registry is None:
            _the_registry = _Registry()
            atexit.register(_the_registry.close)
        return _the_registry
