"""Kafka: the receiver stream (Spark's ``KafkaUtils.createStream``; Kafka's consumer-group
protocol takes ZooKeeper's place).

    stream = ssc.kafka_stream(["readings"], {"bootstrap.servers": "host:9092", "group.id": "iot"})

Each receiver is a member of the consumer group, reading on the event loop with aiokafka;
the group spreads the topics' partitions over the receivers (``num_receivers``, unioned
into one stream). Records are stored undecoded as one raw block per block interval
(``kafka_block``: offsets, timestamps, key and value bytes in one buffer); the batch's tasks
decode them on the workers (``key_decoder``, ``value_decoder``, ``message_handler``).

Delivery: a record's offset is committed to the group only after its block is stored,
i.e. written to the receiver write-ahead log when that is on (``receiver_wal_enable``). A
crash loses nothing: stored blocks come back from the log, and Kafka sends again what was
not committed; the receiver skips what the log already holds (the highest stored offset
per partition, read from the log at recovery), so a record is not stored twice by a crash
between the log write and the commit. A rebalance that moves a partition away before its
commit lets the new owner read those records again (at least once, as any group consumer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from aiostream_engine.decoding import DecodedReceiverInputDStream
from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.transformed import UnionDStream
from aiostream_engine.errors import ConfigurationError
from aiostream_engine.executor.serialization import ensure_serializable
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.sources.kafka_block import KafkaBlock, KafkaBlockBuilder, KafkaBlockDecoder
from aiostream_engine.sources.kafka_fetch import RecordDecoding
from aiostream_engine.sources.kafka_params import ClientSettings, parse_kafka_params
from aiostream_engine.sources.kafka_types import Decoder, KafkaMessage, utf8_decoder

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext

log = logging.getLogger("aiostream_engine.kafka")

#: Records fetched per read call.
READ_RECORDS = 5_000


class _SkipStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, move past what the write-ahead log already holds."""

    def __init__(self, receiver: KafkaReceiver) -> None:
        self.receiver = receiver

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.receiver.consumer
        stored = self.receiver.stored_through
        if consumer is None:
            return
        for tp in assigned:
            after = stored.get((tp.topic, tp.partition))
            if after is None:
                continue
            committed = await consumer.committed(tp)
            if committed is None or committed <= after:
                consumer.seek(tp, after + 1)


class KafkaReceiver(Receiver):
    """One member of the consumer group; stores a block per block interval, then commits."""

    name = "kafka"

    def __init__(
        self, topics: Sequence[str], settings: ClientSettings, max_block_records: int = 20_000
    ) -> None:
        super().__init__()
        if settings.group_id is None:
            raise ConfigurationError("kafka_stream needs 'group.id' in kafka_params")
        self.topics = list(topics)
        self.settings = settings
        self.max_block_records = max_block_records
        self.consumer: AIOKafkaConsumer | None = None
        #: (topic, partition) -> highest offset stored (this run or, after a crash, the log's).
        self.stored_through: dict[tuple[str, int], int] = {}
        self._pending = KafkaBlockBuilder()
        self._flush_lock = anyio.Lock()
        self.records_received = 0
        self.records_stored = 0
        self.commits_failed = 0

    def on_recovered(self, blocks: list[Any]) -> None:
        for block in blocks:
            if isinstance(block, KafkaBlock):
                self._stored(block.last_offsets())
            else:  # a list of KafkaMessage, logged before blocks were raw
                for r in block:
                    self._stored({(r.topic, r.partition): r.offset})

    def _stored(self, offsets: dict[tuple[str, int], int]) -> None:
        for key, offset in offsets.items():
            self.stored_through[key] = max(self.stored_through.get(key, -1), offset)

    async def on_start(self) -> None:
        reset = self.settings.auto_offset_reset or "latest"
        consumer = AIOKafkaConsumer(**self.settings.consumer_kwargs(
            group_id=self.settings.group_id, enable_auto_commit=False,
            auto_offset_reset={"smallest": "earliest", "largest": "latest"}.get(reset, reset),
        ))
        consumer.subscribe(self.topics, listener=_SkipStored(self))
        try:
            await consumer.start()
            self.consumer = consumer
            self.report_healthy()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush_every_block_interval, self.clock.now())
                await self._read(consumer)
        finally:
            self.consumer = None
            self._pending = KafkaBlockBuilder()  # not committed: the group sends them again
            with anyio.CancelScope(shield=True):
                await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=READ_RECORDS)
            for tp, records in batch.items():
                self.records_received += len(records)
                after = self.stored_through.get((tp.topic, tp.partition), -1)
                if records and records[0].offset <= after:
                    records = [r for r in records if r.offset > after]
                self._pending.add(tp.topic, tp.partition, records)
            if self._pending.count >= self.max_block_records:
                await self._flush()

    async def _flush_every_block_interval(self, deadline: float) -> None:
        while True:
            deadline += self.block_interval
            await self.clock.sleep_until(deadline)
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            pending, self._pending = self._pending, KafkaBlockBuilder()
            if not pending.count:
                return
            block = pending.build()
            await self.store_block(block)  # durable (in the log when it is on) on return
            last = block.last_offsets()
            self._stored(last)
            offsets = {TopicPartition(*key): offset + 1 for key, offset in last.items()}
            self.records_stored += block.count
            consumer = self.consumer
            if consumer is None:
                return
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:  # a rebalance: the new owner reads again
                self.commits_failed += 1
                self.report_error(f"commit of {len(offsets)} partition(s) failed: {exc}")


class KafkaInputDStream(DecodedReceiverInputDStream):
    """The stream of one Kafka receiver: its blocks' raw records, decoded by the tasks;
    ``dead_letters()`` holds the ``KafkaDeadLetter`` of each record that did not decode."""

    receiver: KafkaReceiver


class KafkaUnionDStream(UnionDStream):
    """Several Kafka receivers of one group, as one stream."""

    def __init__(self, ssc: StreamingContext, parts: list[KafkaInputDStream]) -> None:
        super().__init__(ssc, list(parts))
        self.parts = parts
        self._dead: DStream | None = None

    @property
    def receivers(self) -> list[KafkaReceiver]:
        return [p.receiver for p in self.parts]

    def dead_letters(self) -> DStream:
        if self._dead is None:
            self._dead = UnionDStream(self._ssc, [p.dead_letters() for p in self.parts])
        return self._dead


def kafka_stream(
    ssc: StreamingContext,
    topics: str | Sequence[str],
    kafka_params: Mapping[str, Any],
    *,
    num_receivers: int = 1,
    key_decoder: Decoder = utf8_decoder,
    value_decoder: Decoder = utf8_decoder,
    message_handler: Callable[[KafkaMessage], Any] | None = None,
    max_block_records: int = 20_000,
    name: str | None = None,
) -> DStream:
    """The receiver stream of ``topics`` for the group ``kafka_params['group.id']``; see
    the module docstring."""
    topic_list = [topics] if isinstance(topics, str) else list(topics)
    if not topic_list:
        raise ValueError("kafka_stream needs at least one topic")
    if num_receivers < 1:
        raise ValueError(f"num_receivers must be >= 1, got {num_receivers}")
    settings = parse_kafka_params(kafka_params, for_what="kafka_stream")
    decoding = RecordDecoding(key_decoder, value_decoder, message_handler)
    ensure_serializable(decoding, "kafka_stream decoders")
    label = name or f"kafka_stream[{','.join(topic_list)}]"
    parts = [
        KafkaInputDStream(
            ssc, KafkaReceiver(topic_list, settings, max_block_records),
            f"{label}[{i}]" if num_receivers > 1 else label, KafkaBlockDecoder(decoding),
        )
        for i in range(num_receivers)
    ]
    return parts[0] if num_receivers == 1 else KafkaUnionDStream(ssc, parts)
