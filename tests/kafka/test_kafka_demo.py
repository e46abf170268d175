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
    from aiostream_engine.sources.kafka_utils import KafkaUtils, TopicAndPartition
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
