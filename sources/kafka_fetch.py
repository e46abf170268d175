"""Worker side of the direct Kafka stream: a task reads its own offset range.

``KafkaRangeInput`` is a task input (like ``RecordsInput``): plain data that travels with
the task, and whose ``open()`` runs where the task runs (a process-pool worker, a Dask
worker, or a thread of the driver with ``master="local"``). It fetches the range from the
broker itself, so the records never pass through the driver; the driver only sends
(topic, partition, from, until) and the client settings.

Connections are reused across tasks: each worker thread keeps one event loop and one
aiokafka consumer per distinct client settings (``_ThreadKafka``), as Spark's executors
cache their Kafka consumers. A task assigns the consumer to its partition, seeks to the
range's start and fetches until the consumer's position reaches the range's end (the
position, not a record count: compaction and transaction markers leave gaps in offsets).
The consumer belongs to no group and resets to nothing (``auto_offset_reset="none"``): an
offset the broker no longer has is an error naming the range, never a silent jump.

A broker that goes away mid-range is waited for: the consumer reconnects on its own and
the task goes on as long as it makes progress within ``fetch_timeout`` seconds; past that it
fails, and the task runner retries it (``task_max_failures``) on the same range.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from aiostream_engine.errors import StreamingError
from aiostream_engine.sources.kafka_params import ClientSettings
from aiostream_engine.sources.kafka_types import Decoder, KafkaDeadLetter, KafkaMessage, OffsetRange

#: Records asked for per fetch call: bounds what one call holds besides the task's list.
FETCH_RECORDS = 10_000
#: How long one fetch call waits for records before the task checks its deadline.
POLL_MS = 500


class KafkaFetchError(StreamingError):
    """A task could not read its offset range."""


class KafkaOffsetsGoneError(KafkaFetchError):
    """Offsets of a range are no longer on the broker (retention, DeleteRecords)."""


@dataclass(frozen=True)
class RecordDecoding:
    """How a fetched record becomes a stream record: ``(key, value)`` decoded, or
    ``message_handler(KafkaMessage)``. A worker-side ``Decoder`` (``decoding.stage``): a
    record whose key or value does not decode (or that the handler refuses) becomes a
    ``KafkaDeadLetter`` naming its topic, partition and offset."""

    key_decoder: Decoder
    value_decoder: Decoder
    message_handler: Callable[[KafkaMessage], Any] | None = None
    chunk: int = 4096

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        key_of, value_of, handler = self.key_decoder, self.value_decoder, self.message_handler
        while items := list(islice(raw, self.chunk)):
            records: list[Any] = []
            keep = records.append
            for r in items:
                try:
                    if handler is None:
                        keep((key_of(r.key), value_of(r.value)))
                    else:
                        headers = tuple(r.headers) if r.headers else ()
                        keep(handler(KafkaMessage(r.topic, r.partition, r.offset, r.timestamp,
                                                  key_of(r.key), value_of(r.value), headers)))
                except Exception as exc:  # a bad record is a dead letter, never a failed task
                    dead.append(KafkaDeadLetter(
                        r.topic, r.partition, r.offset, r.key, r.value, f"{type(exc).__name__}: {exc}"
                    ))
            yield records


@dataclass(frozen=True)
class KafkaRangeInput:
    """A task input: the raw records of ``offset_range``, fetched where the task runs
    (the stream's decode stage follows)."""

    settings: ClientSettings
    offset_range: OffsetRange
    fetch_timeout: float = 60.0

    def open(self) -> Iterator[Any]:
        return iter(self.fetch())

    def fetch(self) -> list[Any]:
        """The range's raw records (aiokafka ``ConsumerRecord``s)."""
        if self.offset_range.count <= 0:
            return []
        return _thread_kafka().fetch(self.settings, self.offset_range, self.fetch_timeout)


class _ThreadKafka:
    """One worker thread's event loop and consumers (one per distinct client settings)."""

    def __init__(self) -> None:
        self.thread = weakref.ref(threading.current_thread())
        self.loop = asyncio.new_event_loop()
        self.consumers: dict[ClientSettings, AIOKafkaConsumer] = {}
        self.lock = threading.Lock()  # held while a task or close_all uses this
        self.closed = False

    def _consumer(self, settings: ClientSettings) -> AIOKafkaConsumer:
        consumer = self.consumers.get(settings)
        if consumer is None:
            consumer = self._run(self._start(settings))
            self.consumers[settings] = consumer
        return consumer

    async def _start(self, settings: ClientSettings) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**settings.consumer_kwargs(
            group_id=None, enable_auto_commit=False, auto_offset_reset="none",
        ))
        await consumer.start()
        return consumer

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def fetch(self, settings: ClientSettings, offsets: OffsetRange, timeout: float) -> list[Any]:
        with self.lock:
            try:
                return self._run(self._fetch(self._consumer(settings), offsets, timeout))
            except OffsetOutOfRangeError as exc:
                raise KafkaOffsetsGoneError(
                    f"offsets {offsets} are no longer on the broker (retention or "
                    f"DeleteRecords removed them): {exc}"
                ) from None
            except KafkaError as exc:
                self._drop(settings)  # its state is unknown: the retry starts afresh
                raise KafkaFetchError(f"reading {offsets}: {type(exc).__name__}: {exc}") from None

    async def _fetch(self, consumer: AIOKafkaConsumer, offsets: OffsetRange, timeout: float) -> list[Any]:
        tp = TopicPartition(offsets.topic, offsets.partition)
        consumer.assign([tp])
        consumer.seek(tp, offsets.from_offset)
        until = offsets.until_offset
        records: list[Any] = []
        position = offsets.from_offset
        deadline = time.monotonic() + timeout
        while position < until:
            if time.monotonic() > deadline:
                raise KafkaFetchError(
                    f"reading {offsets}: no progress for {timeout:g} s at offset {position} "
                    "(broker unreachable or the partition has no leader)"
                )
            batch = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=FETCH_RECORDS)
            got = batch.get(tp, ())
            if got:
                if got[-1].offset < until:
                    records.extend(got)
                else:
                    records.extend(r for r in got if r.offset < until)
            new_position = await consumer.position(tp)
            if new_position > position:
                position = new_position
                deadline = time.monotonic() + timeout
        return records

    def _drop(self, settings: ClientSettings) -> None:
        consumer = self.consumers.pop(settings, None)
        if consumer is not None:
            try:
                self._run(consumer.stop())
            except BaseException:  # noqa: S110 - closing a broken client (or at exit, a
                pass  # broker already gone: aiokafka cancels its own tasks): nothing to report

    def close(self) -> None:
        with self.lock:
            for settings in list(self.consumers):
                self._drop(settings)
            self.loop.close()
            self.closed = True


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
