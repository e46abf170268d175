"""The Kafka receiver stream's raw block: the records of one block interval, undecoded, in
one buffer.

aiokafka hands the receiver one ``ConsumerRecord`` per record; the receiver keeps none of
them. ``KafkaBlockBuilder`` copies, per fetched partition batch, the records' offsets,
timestamps and key and value lengths into arrays and their keys and values into one run
of bytes (no object per record, no pickling per record); ``build`` lays them out as one
buffer::

    offsets (int64 x n) | timestamps (int64 x n) | key lengths (int32 x n)
    | value lengths (int32 x n) | keys and values back to back

A length of -1 is a key or value that was None. Topic and partition are kept per run of
records of one partition (``runs``), the rare record headers by record index. The block is
stored, logged and sent to a worker as that buffer; there ``KafkaBlockDecoder`` reads it
back into ``KafkaMessage``s of raw bytes and decodes them with the stream's
``RecordDecoding``, exactly as records stored one by one were decoded: a record that does
not decode is a ``KafkaDeadLetter`` naming its topic, partition and offset.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiostream_engine.raw.shared import Buffer, SharedBuffer
from aiostream_engine.sources.kafka_fetch import RecordDecoding
from aiostream_engine.sources.kafka_types import KafkaMessage

#: Headers of a record, as aiokafka gives them.
Headers = tuple[tuple[str, bytes], ...]


def _native(values: array) -> array:
    """``values`` in little-endian order, the buffer's (a no-op on this machine's kind)."""
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values


@dataclass(frozen=True)
class KafkaBlock:
    """Undecoded Kafka records in one buffer (see the module docstring): ``bytes``, or,
    under ``local[N]``, the buffer in shared memory (``aiostream_engine.raw.shared``)."""

    data: Buffer | SharedBuffer
    count: int
    #: (topic, partition, records) of each run of records of one partition, in order.
    runs: tuple[tuple[str, int, int], ...]
    #: (record index, headers) of the records that had headers.
    headers: tuple[tuple[int, Headers], ...] = ()

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def last_offsets(self) -> dict[tuple[str, int], int]:
        """The highest offset the block holds of each (topic, partition)."""
        offsets = self._column("q", 0)
        last: dict[tuple[str, int], int] = {}
        end = 0
        for topic, partition, records in self.runs:
            end += records
            key = (topic, partition)
            last[key] = max(last.get(key, -1), offsets[end - 1])
        return last

    def _column(self, typecode: str, start: int) -> array:
        column = array(typecode)
        column.frombytes(self.data[start:start + self.count * column.itemsize])
        return _native(column)

    def messages(self) -> Iterator[KafkaMessage]:
        """The records, as ``KafkaMessage``s of raw key and value bytes."""
        n = self.count
        offsets, timestamps = self._column("q", 0), self._column("q", 8 * n)
        key_lengths, value_lengths = self._column("i", 16 * n), self._column("i", 20 * n)
        data, pos = self.data, 24 * n
        headers = dict(self.headers)
        index = 0
        for topic, partition, records in self.runs:
            for i in range(index, index + records):
                size = key_lengths[i]
                key = None if size < 0 else data[pos:pos + size]
                pos += max(size, 0)
                size = value_lengths[i]
                value = None if size < 0 else data[pos:pos + size]
                pos += max(size, 0)
                yield KafkaMessage(topic, partition, offsets[i], timestamps[i], key, value,
                                   headers.get(i, ()))
            index += records


def _length(data: bytes | None) -> int:
    return -1 if data is None else len(data)


class KafkaBlockBuilder:
    """Collects fetched records (aiokafka ``ConsumerRecord``s or anything with their
    fields) into one ``KafkaBlock``."""

    def __init__(self) -> None:
        self._offsets = array("q")
        self._timestamps = array("q")
        self._key_lengths = array("i")
        self._value_lengths = array("i")
        self._payloads: list[bytes] = []
        self._runs: list[tuple[str, int, int]] = []
        self._headers: list[tuple[int, Headers]] = []
        self.count = 0

    def add(self, topic: str, partition: int, records: Iterable[Any]) -> None:
        """Records of one partition, in offset order."""
        records = list(records)
        if not records:
            return
        keys = [r.key for r in records]
        values = [r.value for r in records]
        self._offsets.extend(r.offset for r in records)
        self._timestamps.extend(r.timestamp for r in records)
        self._key_lengths.extend(map(_length, keys))
        self._value_lengths.extend(map(_length, values))
        payload = b"".join(
            part for pair in zip(keys, values, strict=True) for part in pair if part
        )
        self._payloads.append(payload)
        self._headers.extend(
            (self.count + i, tuple(r.headers)) for i, r in enumerate(records) if r.headers
        )
        self._runs.append((topic, partition, len(records)))
        self.count += len(records)

    def build(self) -> KafkaBlock:
        columns = (self._offsets, self._timestamps, self._key_lengths, self._value_lengths)
        data = b"".join([*(_native(c).tobytes() for c in columns), *self._payloads])
        return KafkaBlock(data, self.count, tuple(self._runs), tuple(self._headers))


@dataclass(frozen=True)
class KafkaBlockDecoder:
    """The worker-side decoder of the receiver stream's blocks (a ``decoding.Decoder``):
    the records of each ``KafkaBlock`` through ``decoding``. A list of ``KafkaMessage``s
    (a block a receiver stored before blocks were raw, read back from its log) decodes the
    same way."""

    decoding: RecordDecoding

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        return self.decoding.decode(self._messages(raw), dead)

    @staticmethod
    def _messages(raw: Iterator[Any]) -> Iterator[Any]:
        for item in raw:
            if isinstance(item, KafkaBlock):
                yield from item.messages()
            else:
                yield item
