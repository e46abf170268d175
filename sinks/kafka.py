"""KafkaSink: each batch's partitions into a Kafka topic, idempotent or transactional.

Used through ``stream.write_to(KafkaSink(...))``. Like every sink here it writes on the
driver's event loop (``dstream.sink_output`` says why), so its producers are pooled per
sink object: opened on the first write, reused across batches, closed at stop; never one
per record or per batch, never shared across processes.

* Default: one idempotent producer (``acks=all``, ``enable_idempotence``), shared by the
  partition writes; a write returns once every record is acknowledged. A retried or
  recovered batch is written again (at least once).
* ``transactional=True``: each output partition of a batch is one Kafka transaction, from a
  producer whose transactional id is stable per output and partition
  (``<transactional_id>-<partition>``), so a restarted job's producer fences its zombie
  (``InitProducerId`` aborts whatever the dead process left open). The transaction also
  commits a marker: the batch time, as the offset of a consumer group of its own per output
  partition (``send_offsets_to_transaction``), atomically with the records. A partition
  whose marker already shows its batch (a batch replayed after a crash) is skipped, so a
  ``read_committed`` consumer sees every batch exactly once.

Records become messages with ``key(record)`` and ``value(record)`` (default: no key, the
record itself); bytes go as they are, str as UTF-8, anything else as JSON (orjson).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from .base import Sink, batch_ms

try:
    from aiokafka import AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the Kafka sink needs aiokafka: pip install 'aiostream-engine[kafka]'") from exc

from aiostream_engine.sources.kafka_params import ClientSettings, parse_kafka_params


def encode(value: Any) -> bytes | None:
    """A message key or value as bytes: bytes as is, str as UTF-8, None as None, else JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


@dataclass
class KafkaSinkStatistics:
    producers_opened: int = 0
    partitions_written: int = 0
    partitions_skipped: int = 0
    records_written: int = 0


class KafkaSink(Sink):
    """Writes records to ``topic``; see the module docstring.

    ``producer_params`` are producer settings, Kafka's names with underscores or aiokafka's
    (``linger_ms``, ``compression_type``, ``security_protocol``, ...). ``name`` identifies
    the output (default ``kafka:<topic>``) and ``transactional_id`` (default
    ``aiostream-<name>``) prefixes its transactional ids: two transactional outputs writing
    to one topic need different names.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        key: Callable[[Any], Any] | None = None,
        value: Callable[[Any], Any] | None = None,
        transactional: bool = False,
        transactional_id: str | None = None,
        name: str | None = None,
        **producer_params: Any,
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.transactional = transactional
        self._name = name or f"kafka:{topic}"
        self.transactional_id = transactional_id or f"aiostream-{self._name}"
        self.settings: ClientSettings = parse_kafka_params(
            {"bootstrap.servers": bootstrap_servers, **producer_params}, for_what=f"KafkaSink({topic})"
        )
        self.statistics = KafkaSinkStatistics()
        self._shared: AIOKafkaProducer | None = None
        self._transactional: dict[int, AIOKafkaProducer] = {}
        self._markers: dict[int, int] = {}  # partition -> newest batch ms committed
        self._partition_locks: dict[int, anyio.Lock] = {}
        self._admin: AIOKafkaAdminClient | None = None

    @property
    def name(self) -> str:
        return self._name

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self.transactional:
            self._admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
            await self._admin.start()
        else:
            self._shared = await self._start_producer()

    async def _start_producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**self.settings.producer_kwargs(
            enable_idempotence=True, acks="all", transactional_id=transactional_id,
        ))
        try:
            await producer.start()  # with a transactional id: InitProducerId fences the zombie
        except BaseException:
            await producer.stop()
            raise
        self.statistics.producers_opened += 1
        return producer

    async def close(self) -> None:
        producers = [p for p in (self._shared, *self._transactional.values()) if p is not None]
        self._shared, self._transactional = None, {}
        self._markers.clear()
        for producer in producers:
            await producer.stop()
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()

    # ---- writing ------------------------------------------------------------------------

    def _messages(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes | None]]:
        key_of, value_of = self.key, self.value
        return [
            (encode(key_of(r)) if key_of else None, encode(value_of(r) if value_of else r))
            for r in records
        ]

    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        if self.transactional:
            lock = self._partition_locks.setdefault(partition_index, anyio.Lock())
            async with lock:
                await self._write_transaction(batch_ms(batch_time), partition_index, records)
            return
        assert self._shared is not None
        producer = self._shared
        futures = [await producer.send(self.topic, v, key=k) for k, v in self._messages(records)]
        for future in futures:
            await future
        self.statistics.partitions_written += 1
        self.statistics.records_written += len(records)

    def marker_group(self, partition_index: int) -> str:
        """The consumer group whose offset records the last batch committed by a partition."""
        return f"{self.transactional_id}-{partition_index}"

    async def _write_transaction(self, time_ms: int, index: int, records: Sequence[Any]) -> None:
        producer = await self._producer_for(index)
        if self._markers.get(index, -1) >= time_ms:
            self.statistics.partitions_skipped += 1
            return
        try:
            async with producer.transaction():
                for k, v in self._messages(records):
                    await producer.send(self.topic, v, key=k)
                await producer.send_offsets_to_transaction(
                    {TopicPartition(self.topic, 0): time_ms + 1}, self.marker_group(index)
                )
        except BaseException:
            # The producer's state is unknown (aborted, fenced, or a commit in doubt): the
            # retry starts a new one, which resolves the old transaction and reads the marker.
            self._transactional.pop(index, None)
            self._markers.pop(index, None)
            with anyio.CancelScope(shield=True):
                await producer.stop()
            raise
        self._markers[index] = time_ms
        self.statistics.partitions_written += 1
        self.statistics.records_written += len(records)

    async def _producer_for(self, index: int) -> AIOKafkaProducer:
        producer = self._transactional.get(index)
        if producer is None:
            producer = await self._start_producer(self.marker_group(index))
            try:
                self._markers[index] = await self._committed_batch(index)
            except BaseException:
                await producer.stop()
                raise
            self._transactional[index] = producer
        return producer

    async def _committed_batch(self, index: int) -> int:
        """The newest batch (ms) this output partition committed, -1 if none."""
        assert self._admin is not None
        tp = TopicPartition(self.topic, 0)
        found = await self._admin.list_consumer_group_offsets(self.marker_group(index), partitions=[tp])
        meta = found.get(tp)
        return meta.offset - 1 if meta is not None and meta.offset > 0 else -1
