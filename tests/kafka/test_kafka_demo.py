"""``aiostream-engine demo --source kafka --bootstrap HOST:PORT`` and PySpark's ``KafkaUtils``
against noida-db."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.kafka_brokers import NoidaKafka, unique_topic
from tests.test_demo import _cli


def test_cli_demo_reads_the_simulated_readings_back_through_kafka(kafka_broker: NoidaKafka) -> None:
    result = subprocess.run(
        [*_cli(), "demo", "--source", "kafka", "--bootstrap", kafka_broker.bootstrap,
         "--topic", unique_topic("demo"), "--duration", "4", "--master", "local",
         "--rate", "500", "--window", "0", "--ui-port", "0"],
        capture_output=True, text=True, timeout=90,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    counts = [int(n) for n in re.findall(r"(\d+) readings from", result.stdout)]
    assert counts and sum(counts) > 500, result.stdout
    assert "stopped:" in result.stdout


@pytest.mark.anyio
async def test_kafka_utils_spells_the_streams_as_pyspark_2_4(kafka_broker: NoidaKafka) -> None:
    from aiostream_engine import ManualClock, StreamingContext
    from aiostream_engine.pyspark.streaming.kafka import KafkaUtils, TopicAndPartition
    from aiostream_engine.testing import advance_batches, collect_batches
    from tests.kafka_brokers import create_topic, produce

    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, [(i % 2, b"k", str(i).encode()) for i in range(10)])
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        direct = KafkaUtils.createDirectStream(
            ssc, [topic], {"metadata.broker.list": kafka_broker.bootstrap},
            fromOffsets={TopicAndPartition(topic, 0): 2, TopicAndPartition(topic, 1): 0},
            messageHandler=lambda m: (m.partition, m.offset, m.message),
        )
        ranges: list[object] = []
        direct.foreachRDD(lambda rdd: ranges.append(rdd.offsetRanges()[0].untilOffset))
        out = collect_batches(direct)
        receiver = KafkaUtils.createStream(ssc, kafka_broker.bootstrap, unique_topic("g"), {topic: 1})
        receiver.foreachRDD(lambda rdd: None)
        await ssc.start()
        await advance_batches(ssc, 1)
    assert sorted(out[0][1]) == sorted(
        [(0, o, str(2 * o)) for o in range(2, 5)] + [(1, o, str(2 * o + 1)) for o in range(5)]
    )
    assert ranges == [5]


def test_a_ported_pyspark_job_reads_kafka_with_kafka_utils(kafka_broker: NoidaKafka) -> None:
    """A PySpark 2.4 script, imports changed only: blocking lifecycle, datetime batch
    times, offsetRanges() in transform, commitAsync."""
    import asyncio
    from datetime import datetime

    from aiostream_engine.pyspark import SparkContext
    from aiostream_engine.pyspark.streaming import StreamingContext
    from aiostream_engine.pyspark.streaming.kafka import KafkaUtils
    from tests.kafka_brokers import committed_offsets, create_topic, produce
    from tests.pyspark.helpers import run_until

    topic, group = unique_topic(), unique_topic("g")
    asyncio.run(create_topic(kafka_broker.bootstrap, topic, 2))
    asyncio.run(produce(kafka_broker.bootstrap, topic, [(i % 2, None, b"a b a") for i in range(6)]))
    sc = SparkContext("local[2]", "kafka-port")
    try:
        ssc = StreamingContext(sc, 0.2)
        stream = KafkaUtils.createDirectStream(
            ssc, [topic], {"bootstrap.servers": kafka_broker.bootstrap, "group.id": group,
                           "auto.offset.reset": "smallest"},
        )
        offsets: list[object] = []
        counts: dict[str, int] = {}
        times: list[object] = []

        def keep_offsets(rdd):  # type: ignore[no-untyped-def]
            offsets[:] = rdd.offsetRanges()
            return rdd

        def output(time, rdd):  # type: ignore[no-untyped-def]
            times.append(time)
            for word, n in rdd.collect():
                counts[word] = counts.get(word, 0) + n
            stream.commitAsync(offsets)

        stream.transform(keep_offsets).flatMap(lambda kv: kv[1].split()).map(
            lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).foreachRDD(output)
        run_until(ssc, lambda: counts == {"a": 12, "b": 6})
    finally:
        sc.stop()
    assert all(isinstance(t, datetime) for t in times)
    assert asyncio.run(committed_offsets(kafka_broker.bootstrap, group)) == {(topic, 0): 3, (topic, 1): 3}
