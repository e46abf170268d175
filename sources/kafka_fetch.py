"""Worker side of the direct Kafka stream: a task reads its own offset range.

``KafkaRangeInput`` is a task input (like ``RecordsInput``): plain data that travels with
the task, and whose ``open()`` runs where the task runs (a process-pool worker, a Dask
worker, or a thread of the driver with ``master="local"``). It fetches the range from the
broker itself, so the records never pass through the driver; the driver only sends
(topic, partition, from, until) and the client settings.

Connections are reused across tasks: each worker thread keeps one event loop and one
aiokafka client (``AIOKafkaClient``: metadata and connections) per distinct client settings
(``_ThreadKafka``), as Spark's executors cache their Kafka consumers. A task sends Fetch
requests for its partition to the partition's leader, from the range's start, until the
position reaches the range's end (the position, not a record count: compaction and
transaction markers leave gaps in offsets), and reads each response's record batches with
aiokafka's own batch readers (``kafka_records``): no consumer, so no fetcher running ahead
of the range in the background and no ``ConsumerRecord`` per record (the consumer's
``getmany`` spent about three quarters of a task's fetch building them). One request asks
for up to ``FETCH_BYTES`` (or the ``max.partition.fetch.bytes`` given): a range of a few
megabytes is one round trip. An offset the broker no longer has is an error naming the
range, never a silent jump.

A broker that goes away mid-range is waited for: connection errors and retriable broker
errors (no leader, leader moved, timeouts) refresh the metadata and retry with backoff, and
the task goes on as long as it makes progress within ``fetch_timeout`` seconds; past that
it fails, and the task runner retries it (``task_max_failures``) on the same range.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaError,
    LeaderNotAvailableError,
    NoError,
    OffsetOutOfRangeError,
    for_code,
)
from aiokafka.protocol.fetch import FetchRequest

from aiostream_engine.errors import StreamingError
from aiostream_engine.sources.kafka_params import ClientSettings
from aiostream_engine.sources.kafka_records import DecodedChunk, FetchedRecords, RangeRecords
from aiostream_engine.sources.kafka_types import Decoder, KafkaDeadLetter, KafkaMessage, OffsetRange

if TYPE_CHECKING:
    from aiostream_engine.sources.kafka_read_ahead import ReadAhead

#: Bytes one Fetch request asks for (per partition and in all), unless the Kafka params set
#: ``max.partition.fetch.bytes`` / ``fetch.max.bytes``: about 130,000 readings of 125 bytes.
FETCH_BYTES = 16 << 20
#: How long the broker may hold a Fetch with nothing to send (the range's records exist,
#: so it answers at once unless the log lost them or a transaction holds them back).
FETCH_WAIT_MS = 500
#: First pause before a failed Fetch is sent again; doubles up to ``MAX_BACKOFF``.
RETRY_BACKOFF = 0.1
MAX_BACKOFF = 1.0
READ_UNCOMMITTED, READ_COMMITTED = 0, 1


class KafkaFetchError(StreamingError):
    """A task could not read its offset range."""


class KafkaOffsetsGoneError(KafkaFetchError):
    """Offsets of a range are no longer on the broker (retention, DeleteRecords)."""


@dataclass(frozen=True)
class RecordDecoding:
    """How a fetched record becomes a stream record: ``(key, value)`` decoded, or
    ``message_handler(KafkaMessage)``. A worker-side ``Decoder`` (``decoding.stage``) of
    records carrying their own topic and partition (the receiver stream's blocks); the
    direct stream's fetched record batches go through ``FetchedDecoding``. A record whose key or
    value does not decode (or that the handler refuses) becomes a ``KafkaDeadLetter``
    naming its topic, partition and offset."""

    key_decoder: Decoder
    value_decoder: Decoder
    message_handler: Callable[[KafkaMessage], Any] | None = None
    chunk: int = 4096

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        while items := list(islice(raw, self.chunk)):
            yield self.records(items, dead)

    def records(
        self, items: Iterable[Any], dead: list[Any], topic: str | None = None, partition: int = -1,
    ) -> list[Any]:
        """``items`` decoded, in order (iterated once); a refused one goes to ``dead``.
        ``topic`` and ``partition``: those of every item, else each item's own."""
        key_of, value_of, handler = self.key_decoder, self.value_decoder, self.message_handler
        records: list[Any] = []
        keep = records.append
        for r in items:
            try:
                if handler is None:
                    keep((key_of(r.key), value_of(r.value)))
                else:
                    headers = tuple(r.headers) if r.headers else ()
                    keep(handler(KafkaMessage(
                        r.topic if topic is None else topic, r.partition if topic is None else partition,
                        r.offset, r.timestamp, key_of(r.key), value_of(r.value), headers,
                    )))
            except Exception as exc:  # a bad record is a dead letter, never a failed task
                dead.append(KafkaDeadLetter(
                    r.topic if topic is None else topic, r.partition if topic is None else partition,
                    r.offset, r.key, r.value, f"{type(exc).__name__}: {exc}",
                ))
        return records


@dataclass(frozen=True)
class FetchedDecoding:
    """The direct stream's worker-side ``Decoder``: its raw items are ``FetchedRecords``
    (one per fetched range), decoded record batch by record batch as they are iterated, or
    ``DecodedChunk``s a read-ahead decoded already."""

    decoding: RecordDecoding

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        for fetched in raw:
            if isinstance(fetched, DecodedChunk):  # decoded ahead (kafka_read_ahead)
                dead.extend(fetched.dead)
                yield fetched.records
                continue
            for records in fetched.record_batches():
                yield self.decoding.records(records, dead, fetched.topic, fetched.partition)


@dataclass(frozen=True)
class KafkaRangeInput:
    """A task input: the raw records of ``offset_range``, fetched where the task runs
    (the stream's decode stage follows)."""

    settings: ClientSettings
    offset_range: OffsetRange
    fetch_timeout: float = 60.0
    #: The worker's read-ahead serves the range when it holds it (``kafka_read_ahead``).
    read_ahead: ReadAhead | None = None
    #: The worker this partition's tasks run on (a stable index per topic partition).
    placement: int | None = None

    def open(self) -> Iterator[Any]:
        if self.read_ahead is not None and self.offset_range.count > 0:
            return self.read_ahead.open(self)
        return iter(self.fetch())

    def for_range(self, offsets: OffsetRange) -> KafkaRangeInput:
        """This input reading ``offsets`` itself (no read-ahead)."""
        return KafkaRangeInput(self.settings, offsets, self.fetch_timeout)

    def fetch(self) -> list[FetchedRecords]:
        """The range's records, as one ``FetchedRecords`` (none for an empty range)."""
        if self.offset_range.count <= 0:
            return []
        return [_thread_kafka().fetch(self.settings, self.offset_range, self.fetch_timeout)]


class _ThreadKafka:
    """One worker thread's event loop and clients (one per distinct client settings)."""

    def __init__(self) -> None:
        self.thread = weakref.ref(threading.current_thread())
        self.loop = asyncio.new_event_loop()
        self.clients: dict[ClientSettings, AIOKafkaClient] = {}
        self.lock = threading.Lock()  # held while a task or close_all uses this
        self.closed = False

    async def _client(self, settings: ClientSettings) -> AIOKafkaClient:
        client = self.clients.get(settings)
        if client is None:
            client = self.clients[settings] = await new_client(settings)
        return client

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def fetch(self, settings: ClientSettings, offsets: OffsetRange, timeout: float) -> FetchedRecords:
        with self.lock:
            try:
                return self._run(self._fetch(settings, offsets, timeout))
            except OffsetOutOfRangeError as exc:
                raise KafkaOffsetsGoneError(
                    f"offsets {offsets} are no longer on the broker (retention or "
                    f"DeleteRecords removed them): {exc}"
                ) from None
            except KafkaError as exc:
                self._drop(settings)  # its state is unknown: the retry starts afresh
                raise KafkaFetchError(f"reading {offsets}: {type(exc).__name__}: {exc}") from None
            except KafkaFetchError:
                self._drop(settings)
                raise

    async def _fetch(self, settings: ClientSettings, offsets: OffsetRange, timeout: float) -> FetchedRecords:
        return await _RangeFetch(settings, offsets, timeout).run(await self._client(settings))

    def _drop(self, settings: ClientSettings) -> None:
        client = self.clients.pop(settings, None)
        if client is not None:
            try:
                self._run(client.close())
            except BaseException:  # noqa: S110 - closing a broken client (or at exit, a
                pass  # broker already gone: aiokafka cancels its own tasks): nothing to report

    def close(self) -> None:
        with self.lock:
            for settings in list(self.clients):
                self._drop(settings)
            self.loop.close()
            self.closed = True


async def new_client(settings: ClientSettings) -> AIOKafkaClient:
    """A bootstrapped aiokafka client (metadata and connections) for ``settings``."""
    oauth = dict(settings.consumer).get("sasl_oauth_token_provider")
    client = AIOKafkaClient(**settings.client_kwargs(
        **({"sasl_oauth_token_provider": oauth} if oauth is not None else {})
    ))
    try:
        await client.bootstrap()
    except BaseException:
        await client.close()
        raise
    return client


async def one_fetch(
    client: AIOKafkaClient, settings: ClientSettings, offsets: OffsetRange, wait_ms: int
) -> FetchedRecords:
    """One Fetch request from ``offsets.from_offset`` (the broker holds it up to ``wait_ms``
    when it has nothing): what it brought of ``offsets``, ending where the next Fetch
    starts. Errors are raised as they come (no retry)."""
    fetch = _RangeFetch(settings, offsets, timeout=0.0)
    fetch.wait_ms = wait_ms
    await client.add_topic(offsets.topic)
    await fetch._fetch_once(client)
    got = fetch.range.fetched()
    return FetchedRecords(got.topic, got.partition, got.from_offset, fetch.range.position, got.batches)


class _RangeFetch:
    """One task's reading of one range: Fetch requests to the partition's leader from the
    position, until the range is read (see the module docstring)."""

    def __init__(self, settings: ClientSettings, offsets: OffsetRange, timeout: float) -> None:
        consumer = dict(settings.consumer)
        self.offsets = offsets
        self.timeout = timeout
        self.tp = TopicPartition(offsets.topic, offsets.partition)
        read_committed = settings.isolation_level == "read_committed"
        self.isolation = READ_COMMITTED if read_committed else READ_UNCOMMITTED
        self.partition_bytes = int(consumer.get("max_partition_fetch_bytes", FETCH_BYTES))
        self.request_bytes = int(consumer.get("fetch_max_bytes", max(FETCH_BYTES, self.partition_bytes)))
        self.wait_ms = int(consumer.get("fetch_max_wait_ms", FETCH_WAIT_MS))
        self.range = RangeRecords(
            offsets, read_committed=read_committed, check_crcs=bool(consumer.get("check_crcs", True))
        )

    async def run(self, client: AIOKafkaClient) -> FetchedRecords:
        deadline = time.monotonic() + self.timeout
        backoff = RETRY_BACKOFF
        await client.add_topic(self.tp.topic)  # its leaders in the metadata (once per client)
        while not self.range.done:
            position = self.range.position
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                async with asyncio.timeout(left):
                    await self._fetch_once(client)
            except TimeoutError:
                raise KafkaFetchError(
                    f"reading {self.offsets}: no progress for {self.timeout:g} s at offset "
                    f"{position} (broker unreachable or the partition has no leader)"
                ) from None
            except KafkaError as exc:
                if isinstance(exc, OffsetOutOfRangeError) or not exc.retriable:
                    raise
                if exc.invalid_metadata:
                    client.force_metadata_update()  # runs while we back off
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if self.range.position > position:
                deadline = time.monotonic() + self.timeout
                backoff = RETRY_BACKOFF
        return self.range.fetched()

    async def _fetch_once(self, client: AIOKafkaClient) -> None:
        """One Fetch from the position; the records of the range it brings are kept."""
        tp, position = self.tp, self.range.position
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise LeaderNotAvailableError(f"no leader known for {tp.topic}-{tp.partition}")
        request = FetchRequest(
            self.wait_ms, 1, self.request_bytes, self.isolation,
            [(tp.topic, [(tp.partition, position, self.partition_bytes)])],
        )
        response = await client.send(leader, request)
        version = response.API_VERSION
        for topic, partitions in response.topics:
            for partition, error_code, _highwater, *data in partitions:
                if topic != tp.topic or partition != tp.partition:
                    continue
                error = for_code(error_code)
                if error is OffsetOutOfRangeError:
                    raise OffsetOutOfRangeError({tp: position})
                if error is not NoError:
                    raise error()
                # data: the record set last; before it, from v4 on, the aborted
                # transactions (v11 adds the preferred read replica after them)
                aborted = data[2] if version >= 11 else data[-2] if version >= 4 else None
                if data[-1]:
                    self.range.add(data[-1], aborted)
_local = threading.local()
_all: list[_ThreadKafka] = []
_all_lock = threading.Lock()


def _thread_kafka() -> _ThreadKafka:
    mine: _ThreadKafka | None = getattr(_local, "kafka", None)
    if mine is None or mine.closed:
        mine = _local.kafka = _ThreadKafka()
        with _all_lock:
            dead = [k for k in _all if (t := k.thread()) is None or not t.is_alive()]
            for k in dead:
                _all.remove(k)
            _all.append(mine)
        for k in dead:  # threads that ended (an idle pool thread): close what they left
            k.close()
    return mine


def close_thread_consumers() -> None:
    """Close every consumer this process's threads cached (the driver calls it at stop:
    with ``master="local"`` the tasks ran on its threads; a worker process at exit).
    Blocking: run it off the loop."""
    with _all_lock:
        every, _all[:] = list(_all), []
    for kafka in every:
        kafka.close()


# A worker process ends when the driver closes its pipe: leave the brokers politely.
atexit.register(close_thread_consumers)
