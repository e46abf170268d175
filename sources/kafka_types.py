"""The plain values of the Kafka sources: partitions, offset ranges, messages, decoders.

Spark's names work too: ``OffsetRange.fromOffset`` / ``untilOffset``, ``TopicAndPartition``,
``KafkaMessage.message`` (PySpark's ``KafkaMessageAndMetadata``), ``utf8_decoder``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

Decoder = Callable[[bytes | None], Any]


def utf8_decoder(data: bytes | None) -> str | None:
    """PySpark's default key and value decoder: UTF-8 text, None stays None."""
    return None if data is None else data.decode("utf-8")


def raw_decoder(data: bytes | None) -> bytes | None:
    """The bytes as they are."""
    return data


class TopicAndPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


class OffsetRange(NamedTuple):
    """The records ``[from_offset, until_offset)`` of one topic partition: what one RDD
    partition of the direct stream reads."""

    topic: str
    partition: int
    from_offset: int
    until_offset: int

    @property
    def count(self) -> int:
        """Offsets in the range (records, unless the log has gaps: compaction,
        transaction markers)."""
        return self.until_offset - self.from_offset

    @property
    def topic_and_partition(self) -> TopicAndPartition:
        return TopicAndPartition(self.topic, self.partition)

    # PySpark's names
    @property
    def fromOffset(self) -> int:  # noqa: N802
        return self.from_offset

    @property
    def untilOffset(self) -> int:  # noqa: N802
        return self.until_offset

    def topicAndPartition(self) -> TopicAndPartition:  # noqa: N802
        return self.topic_and_partition

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition} [{self.from_offset}, {self.until_offset})"


class KafkaMessage(NamedTuple):
    """One record with its metadata, as ``message_handler`` receives it (decoded key and
    value); PySpark's ``KafkaMessageAndMetadata``."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds since the epoch (create or log-append time)
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def message(self) -> Any:
        """PySpark's name of the value."""
        return self.value


class KafkaDeadLetter(NamedTuple):
    """A record the key or value decoder (or the message handler) refused."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
