"""IoT readings through Kafka: windowed per-device statistics to PostgreSQL, alerts to a
Kafka topic, exactly once across restarts.

    simulated devices --(aiokafka producer)--> topic "readings" (4 partitions)
       |  kafka_direct_stream: each batch reads one offset range per partition, fetched by
       |  the tasks themselves; JSON decoded on the workers, bad records -> dead_letters()
       +-- temperature above the threshold -> KafkaSink(transactional=True) topic "alerts"
       +-- reduce_by_key_and_window (count, sum, sum of squares; inverse function) ->
           mean and standard deviation -> PostgresSink upsert on device_id

Checkpointing holds the window's state and each batch's offset ranges: run it again with
the same ``--checkpoint`` and it resumes where it stopped (a batch cut before a crash reads
exactly its ranges again; the sinks skip what was already written).

    python examples/kafka_iot.py --bootstrap 127.0.0.1:9092 --duration 30
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from aiostream_engine import RDD, StreamingContext
from aiostream_engine.sinks import KafkaSink, PostgresSink

STATS_SQL = """
CREATE TABLE IF NOT EXISTS kafka_device_stats (
    device_id        text PRIMARY KEY,
    window_end       timestamptz NOT NULL,
    readings         integer NOT NULL,
    mean_temperature double precision NOT NULL,
    std_temperature  double precision NOT NULL
)"""
STATS_COLUMNS = ["device_id", "window_end", "readings", "mean_temperature", "std_temperature"]


async def create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in names:
            try:
                await admin.create_topics([NewTopic(name, 4, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def produce_readings(
    bootstrap: str, topic: str, devices: int, rate: float, seconds: float
) -> int:
    """Simulated devices: ``rate`` JSON readings per second, keyed by device (one in a
    thousand is garbage, to show the dead letters)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    rng = random.Random(7)
    sent = 0
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < elapsed * rate:
                device = f"device-{rng.randrange(devices):03d}"
                reading = {"device_id": device, "temperature": round(rng.gauss(24, 4), 2),
                           "ts": time.time()}
                value = b"{not json" if sent % 1000 == 999 else orjson.dumps(reading)
                await producer.send(topic, value, key=device.encode())
                sent += 1
            await anyio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


# ---- the pipeline's functions (module level: they travel to the workers) ----------------


def moments(kv: tuple[str, dict[str, Any]]) -> tuple[str, tuple[int, float, float]]:
    t = float(kv[1]["temperature"])
    return kv[0], (1, t, t * t)


def add(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def subtract(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def has_readings(pair: tuple[str, tuple[int, float, float]]) -> bool:
    return pair[1][0] > 0


def stats_rows(time: float, rdd: RDD) -> RDD:
    window_end = datetime.fromtimestamp(time, tz=UTC)

    def row(pair: tuple[str, tuple[int, float, float]]) -> tuple[Any, ...]:
        device, (n, total, squares) = pair
        mean = total / n
        return device, window_end, n, mean, math.sqrt(max(squares / n - mean * mean, 0.0))

    return rdd.map(row)


def setup(args: argparse.Namespace) -> StreamingContext:
    ssc = StreamingContext(args.batch, master=args.master)
    readings = ssc.kafka_direct_stream(
        "readings",
        {"bootstrap.servers": args.bootstrap, "group.id": "kafka-iot-example",
         "auto.offset.reset": "earliest"},
        value_decoder=orjson.loads,
    )
    readings.dead_letters().map(
        lambda d: f"dead letter {d.topic}-{d.partition}@{d.offset}: {d.error}"
    ).pprint(3)
    threshold = args.threshold
    alerts = readings.filter(lambda kv: kv[1]["temperature"] > threshold).map(lambda kv: kv[1])
    alerts.write_to(
        KafkaSink(args.bootstrap, "alerts", transactional=True, key=lambda r: r["device_id"])
    )
    readings.map(moments).reduce_by_key_and_window(
        add, subtract, args.window, args.slide, filter_func=has_readings, name="device-moments"
    ).transform(stats_rows).write_to(
        PostgresSink(args.dsn, table="kafka_device_stats", columns=STATS_COLUMNS, key="device_id")
    )
    ssc.checkpoint(args.checkpoint)
    return ssc


async def count_alerts(bootstrap: str) -> int:
    """Alerts a read_committed consumer sees: each committed batch once, nothing aborted."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = [TopicPartition("alerts", p) for p in range(4)]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(records) for records in batch.values())
        return seen
    finally:
        await consumer.stop()


async def main(args: argparse.Namespace) -> None:
    await create_topics(args.bootstrap, "readings", "alerts")
    conn = await asyncpg.connect(args.dsn)
    await conn.execute(STATS_SQL)
    await conn.close()
    ssc = StreamingContext.get_or_create(args.checkpoint, lambda: setup(args))
    async with ssc:
        await ssc.start()
        sent = await produce_readings(
            args.bootstrap, "readings", args.devices, args.rate, args.duration
        )
        await anyio.sleep(2 * args.batch)
        await ssc.stop(graceful=True)
    print(f"readings produced: {sent}")
    alerts = await count_alerts(args.bootstrap)
    print(f"alerts seen by a read_committed consumer: {alerts}")
    conn = await asyncpg.connect(args.dsn)
    try:
        for row in await conn.fetch("SELECT * FROM kafka_device_stats ORDER BY device_id LIMIT 5"):
            print(dict(row))
    finally:
        await conn.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--batch", type=float, default=1.0, help="batch interval, seconds")
    parser.add_argument("--window", type=float, default=10.0, help="window length, seconds")
    parser.add_argument("--slide", type=float, default=2.0, help="window slide, seconds")
    parser.add_argument("--threshold", type=float, default=30.0, help="alert above, degrees")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=500.0, help="readings per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to produce")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint or tempfile.mkdtemp(prefix="kafka-iot-checkpoint-")
    return args


if __name__ == "__main__":
    anyio.run(main, arguments())
