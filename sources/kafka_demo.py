"""The demo's Kafka source: simulated devices write their readings into a Kafka topic and
the direct stream reads them back (``aiostream-engine demo --source kafka --bootstrap
HOST:PORT``).

The same ``SensorSimulator`` readings as the built-in demo (JSON text, a share of them
broken) are produced at the demo's rate by a task of the demo itself, keyed by device, into
``topic`` (created with four partitions when missing); the stream starts at the topic's
end, so each run shows what it produced.
"""

from __future__ import annotations

import math
import time

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from aiostream_engine.context import StreamingContext
from aiostream_engine.dstream.base import DStream
from aiostream_engine.sources.simulator import SensorSimulator

DEMO_TOPIC = "aiostream-demo"
PARTITIONS = 4


async def ensure_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def produce_readings(bootstrap: str, topic: str, simulator: SensorSimulator) -> None:
    """Produce ``simulator``'s readings at its rate until cancelled."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, enable_idempotence=True)
    await producer.start()
    try:
        start = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            due = math.floor((now - start) * simulator.rate)
            while sent < due:
                line = simulator.next_line(time.time())
                await producer.send(topic, line.encode())
                sent += 1
            await anyio.sleep(0.05)
    finally:
        with anyio.CancelScope(shield=True):
            await producer.stop()


def demo_stream(ssc: StreamingContext, bootstrap: str, topic: str) -> DStream:
    """The readings' JSON lines, read by the direct stream from the topic's end."""
    stream = ssc.kafka_direct_stream(
        topic, {"bootstrap.servers": bootstrap, "auto.offset.reset": "latest"},
        name=f"kafka:{topic}",
    )
    return stream.map(_value)


def _value(record: tuple[str | None, str]) -> str:
    return record[1]
