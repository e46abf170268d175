"""KafkaSink against noida-db: idempotent writes, and one transaction per batch partition
that a read_committed consumer sees exactly once, replays and zombies included."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from aiostream_engine.sinks import KafkaSink
from tests.kafka_brokers import create_topic, read_topic, unique_topic
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio


async def test_records_of_every_batch_land_with_their_keys(kafka_bootstrap: str) -> None:
    topic = unique_topic()
    await create_topic(kafka_bootstrap, topic, 2)
    sink = KafkaSink(kafka_bootstrap, topic, key=lambda r: r["device"], linger_ms=2)
    batches = [[{"device": f"d{i % 3}", "n": i} for i in range(b * 10, b * 10 + 10)] for b in range(3)]
    await write_batches(sink, batches)
    got = await read_topic(kafka_bootstrap, topic)
    assert sorted((k, v) for _, k, v in got) == sorted(
        (r["device"].encode(), f'{{"device":"{r["device"]}","n":{r["n"]}}}'.encode())
        for batch in batches for r in batch
    )
    # a key always goes to the same partition
    assert len({(k, p) for p, k, _ in got}) == 3
    assert sink.statistics.producers_opened == 1
    assert sink.statistics.partitions_written == 6


async def test_transactional_partitions_are_written_once_even_when_a_batch_is_replayed(
    kafka_bootstrap: str,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_bootstrap, topic, 1)
    sink = KafkaSink(kafka_bootstrap, topic, transactional=True, name=unique_topic("out"))
    async with sink:
        await sink.ensure_open()
        await sink.write_partition(1.0, 0, ["a", "b"])
        await sink.write_partition(1.0, 1, ["c"])
        await sink.write_partition(1.0, 0, ["a", "b"])  # a retried write of the same partition
    # A restarted job (a new sink, same name) replays batch 1 and goes on with batch 2.
    again = KafkaSink(kafka_bootstrap, topic, transactional=True, name=sink.name)
    async with again:
        await again.ensure_open()
        await again.write_partition(1.0, 0, ["a", "b"])
        await again.write_partition(1.0, 1, ["c"])
        await again.write_partition(2.0, 0, ["d"])
    got = await read_topic(kafka_bootstrap, topic)
    assert sorted(v for _, _, v in got) == [b"a", b"b", b"c", b"d"]
    assert (sink.statistics.partitions_written, sink.statistics.partitions_skipped) == (2, 1)
    assert (again.statistics.partitions_written, again.statistics.partitions_skipped) == (1, 2)


async def test_a_restarted_output_fences_its_zombie_and_its_open_transaction_is_never_seen(
    kafka_bootstrap: str,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_bootstrap, topic, 1)
    sink = KafkaSink(kafka_bootstrap, topic, transactional=True, name=unique_topic("out"))
    zombie = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=sink.marker_group(0)
    )
    await zombie.start()
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait(topic, b"from the zombie")
        async with sink:
            await sink.ensure_open()
            await sink.write_partition(5.0, 0, ["from the new job"])
        with pytest.raises(Exception):  # noqa: B017 - ProducerFenced, however aiokafka words it
            await zombie.send_and_wait(topic, b"late")
            await zombie.commit_transaction()
    finally:
        await zombie.stop()
    assert [v for _, _, v in await read_topic(kafka_bootstrap, topic)] == [b"from the new job"]


def test_sink_parameters_are_checked() -> None:
    with pytest.raises(Exception, match="unknown Kafka parameter 'lingr_ms'"):
        KafkaSink("h:1", "t", lingr_ms=5)
    sink: Any = KafkaSink("h:1", "t", compression_type="gzip")
    assert dict(sink.settings.producer)["compression_type"] == "gzip"
