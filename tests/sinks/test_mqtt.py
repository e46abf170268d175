"""MqttSink against a real mosquitto: topics from the records, payloads, QoS, one client."""

from __future__ import annotations

import aiomqtt
import anyio
import orjson
import pytest

from aiostream_engine import JobFailedError, ManualClock, StreamingContext
from aiostream_engine.sinks import MqttSink
from aiostream_engine.sinks.mqtt import format_topic
from aiostream_engine.testing import advance_batches
from tests.sinks.conftest import Broker
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio


def test_topic_templates_read_mappings_tuples_and_attributes() -> None:
    class Reading:
        def __init__(self) -> None:
            self.device_id = "d7"

    assert format_topic("alerts/{device_id}", {"device_id": "d1", "x": 1}) == "alerts/d1"
    assert format_topic("stats/{0}", ("d2", 3.5)) == "stats/d2"
    assert format_topic("alerts/{device_id}", Reading()) == "alerts/d7"


async def receive(client: aiomqtt.Client, count: int) -> list[tuple[str, bytes, int]]:
    got = []
    with anyio.fail_after(10):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            got.append((message.topic.value, message.payload, message.qos))
            if len(got) == count:
                return sorted(got)
    raise AssertionError("the subscription ended early")


async def test_publishes_every_record_to_its_topic_with_qos_1(sink_broker: Broker) -> None:
    readings = [[{"device_id": f"d{i}", "temperature": 20 + i} for i in range(5)],
                [{"device_id": "d0", "temperature": 99}]]
    sink = MqttSink(sink_broker.host, sink_broker.port, topic="alerts/{device_id}", qos=1)
    async with aiomqtt.Client(sink_broker.host, sink_broker.port, identifier="observer") as observer:
        await observer.subscribe("alerts/#", qos=1)
        async with sink:
            await write_batches(sink, readings, num_partitions=3)
            assert sink.connections_opened == 1  # one client for all partitions and batches
        got = await receive(observer, 6)
    expected = [
        (f"alerts/{r['device_id']}", orjson.dumps(r), 1) for batch in readings for r in batch
    ]
    assert got == sorted(expected)
    assert sink.messages_published == 6


async def test_a_payload_function_and_a_topic_function(sink_broker: Broker) -> None:
    sink = MqttSink(
        sink_broker.host, sink_broker.port, qos=0,
        topic=lambda pair: f"counts/{pair[0]}", payload=lambda pair: str(pair[1]),
    )
    async with aiomqtt.Client(sink_broker.host, sink_broker.port) as observer:
        await observer.subscribe("counts/+", qos=0)
        async with sink:
            await write_batches(sink, [[("a", 3), ("b", 4)]])
        got = await receive(observer, 2)
    assert got == [("counts/a", b"3", 0), ("counts/b", b"4", 0)]


async def test_an_unreachable_broker_fails_the_batch_naming_the_sink() -> None:
    sink = MqttSink("127.0.0.1", 1, topic="x")  # port 1: nothing listens
    with pytest.raises(JobFailedError) as failed:
        await write_batches(sink, [[{"a": 1}]], num_partitions=1, retries=1, backoff=0)
    assert str(failed.value.cause).startswith(
        "sink mqtt://127.0.0.1:1: partition 0 of batch 1.000 failed 2 attempt(s); "
        "last error: MqttError:"
    )
    await sink.aclose()


async def test_after_the_broker_restarts_the_retry_publishes_on_a_new_connection(
    sink_broker: Broker,
) -> None:
    sink = MqttSink(sink_broker.host, sink_broker.port, topic="t/{0}", qos=1, timeout=3)
    clock = ManualClock(0.0)
    async with sink, StreamingContext(1.0, master="local", clock=clock) as ssc:
        ssc.queue_stream([[("a", 1)], [("b", 2)]]).write_to(sink, retries=3, backoff=0)
        await ssc.start()
        async with aiomqtt.Client(sink_broker.host, sink_broker.port) as observer:
            await observer.subscribe("t/#", qos=1)
            await advance_batches(ssc, 1)
            assert await receive(observer, 1) == [("t/a", b'["a",1]', 1)]
        sink_broker.stop()  # SIGKILL: the sink's connection is gone
        await sink_broker.start()
        async with aiomqtt.Client(sink_broker.host, sink_broker.port) as observer:
            await observer.subscribe("t/#", qos=1)
            await advance_batches(ssc, 1)
            assert await receive(observer, 1) == [("t/b", b'["b",2]', 1)]
        await ssc.stop()
    assert ssc.errors == []
    assert sink.connections_opened == 2
