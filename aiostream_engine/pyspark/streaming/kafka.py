"""PySpark's ``pyspark.streaming.kafka`` (Spark 2.4's Kafka integration): ``KafkaUtils``,
``OffsetRange``, ``TopicAndPartition``, ``KafkaMessageAndMetadata``, ``utf8_decoder``, so
``from pyspark.streaming.kafka import KafkaUtils`` ports as
``from aiostream_engine.pyspark.streaming.kafka import KafkaUtils``.

* ``KafkaUtils.createDirectStream(ssc, topics, kafkaParams, fromOffsets=None,
  keyDecoder=utf8_decoder, valueDecoder=utf8_decoder, messageHandler=None)`` is
  ``ssc.kafka_direct_stream``;
* ``KafkaUtils.createStream(ssc, bootstrapServers, groupId, topics, kafkaParams=None, ...)``
  is ``ssc.kafka_stream``: Kafka's group protocol replaces ZooKeeper, so PySpark's
  ``zkQuorum`` argument is the bootstrap servers; ``topics`` may be PySpark's
  ``{topic: threads}`` (the largest thread count is the number of receivers) or a list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiostream_engine.sources.kafka_types import (
    KafkaMessage,
    OffsetRange,
    TopicAndPartition,
    utf8_decoder,
)

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext
    from aiostream_engine.dstream.base import DStream
    from aiostream_engine.sources.kafka import DirectKafkaInputDStream

#: PySpark's name of the record ``messageHandler`` receives.
KafkaMessageAndMetadata = KafkaMessage

__all__ = [
    "KafkaMessageAndMetadata", "KafkaUtils", "OffsetRange", "TopicAndPartition", "utf8_decoder",
]


class KafkaUtils:
    """PySpark's entry points to the Kafka streams (static methods)."""

    @staticmethod
    def createDirectStream(  # noqa: N802 - PySpark's name
        ssc: StreamingContext,
        topics: Sequence[str],
        kafkaParams: Mapping[str, Any],  # noqa: N803
        fromOffsets: Mapping[TopicAndPartition, int] | None = None,  # noqa: N803
        keyDecoder: Callable[[bytes | None], Any] = utf8_decoder,  # noqa: N803
        valueDecoder: Callable[[bytes | None], Any] = utf8_decoder,  # noqa: N803
        messageHandler: Callable[[KafkaMessage], Any] | None = None,  # noqa: N803
    ) -> DirectKafkaInputDStream:
        return ssc.kafka_direct_stream(
            list(topics), dict(kafkaParams), from_offsets=fromOffsets, key_decoder=keyDecoder,
            value_decoder=valueDecoder, message_handler=messageHandler,
        )

    @staticmethod
    def createStream(  # noqa: N802 - PySpark's name
        ssc: StreamingContext,
        bootstrapServers: str,  # noqa: N803 - PySpark's zkQuorum
        groupId: str,  # noqa: N803
        topics: Mapping[str, int] | Sequence[str],
        kafkaParams: Mapping[str, Any] | None = None,  # noqa: N803
        storageLevel: Any = None,  # noqa: N803 - blocks live in memory (and the WAL when on)
        keyDecoder: Callable[[bytes | None], Any] = utf8_decoder,  # noqa: N803
        valueDecoder: Callable[[bytes | None], Any] = utf8_decoder,  # noqa: N803
    ) -> DStream:
        receivers = max(topics.values(), default=1) if isinstance(topics, Mapping) else 1
        params = {"bootstrap.servers": bootstrapServers, "group.id": groupId, **(kafkaParams or {})}
        return ssc.kafka_stream(
            list(topics), params, num_receivers=max(1, int(receivers)),
            key_decoder=keyDecoder, value_decoder=valueDecoder,
        )
