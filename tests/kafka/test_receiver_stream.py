"""kafka_stream (the receiver stream) against noida-db on a ManualClock: a block per block
interval, decoded by the tasks, offsets committed to the group only once stored."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.kafka_block import KafkaBlockBuilder
from aiostream_engine.sources.kafka_params import parse_kafka_params
from aiostream_engine.sources.kafka_receiver import KafkaReceiver
from aiostream_engine.sources.kafka_types import KafkaMessage
from aiostream_engine.testing import advance_batches, collect_batches
from tests.kafka_brokers import NoidaKafka, committed_offsets, create_topic, produce, unique_topic

pytestmark = pytest.mark.anyio


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        with anyio.fail_after(15):
            while not condition():
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_records_are_stored_then_committed_and_decoded_by_the_tasks(
    kafka_broker: NoidaKafka,
) -> None:
    topic, group = unique_topic(), unique_topic("g")
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 3)
    await produce(bootstrap, topic, [(i % 3, None, str(i).encode()) for i in range(90)])
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0)) as ssc:
        stream = ssc.kafka_stream(
            topic, {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"},
            value_decoder=lambda b: int(b),
        )
        receiver: KafkaReceiver = stream.receiver  # type: ignore[attr-defined]
        out = collect_batches(stream.map(lambda kv: kv[1]))
        await ssc.start()
        await until(lambda: receiver.records_received == 90, "90 records read")
        assert await committed_offsets(bootstrap, group) == {}  # read, not stored: not committed
        ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
        await until(lambda: receiver.records_stored == 90, "90 records stored")
        await advance_batches(ssc, 1)
    assert sorted(out[0][1]) == list(range(90))
    assert await committed_offsets(bootstrap, group) == {(topic, p): 30 for p in range(3)}


async def test_two_receivers_share_the_partitions_of_their_group(kafka_broker: NoidaKafka) -> None:
    topic, group = unique_topic(), unique_topic("g")
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 4)
    await produce(bootstrap, topic, [(i % 4, None, str(i).encode()) for i in range(40)])
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.kafka_stream(
            [topic], {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "smallest"},
            num_receivers=2,
        )
        receivers = [p.receiver for p in stream.dependencies]  # type: ignore[attr-defined]
        out = collect_batches(stream.map(lambda kv: int(kv[1])))
        await ssc.start()
        with anyio.fail_after(30):
            while sum(r.records_stored for r in receivers) < 40:
                ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
                await anyio.sleep(0.05)
        await advance_batches(ssc, 1)
    assert sorted(v for _, batch in out for v in batch) == list(range(40))


async def test_the_receiver_streams_undecodable_records_go_to_dead_letters(
    kafka_broker: NoidaKafka,
) -> None:
    topic, group = unique_topic(), unique_topic("g")
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 1)
    await produce(bootstrap, topic, [(0, None, b"1"), (0, None, b"x"), (0, None, b"2")])
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.kafka_stream(
            topic, {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"},
            value_decoder=lambda b: int(b),
        )
        receiver: KafkaReceiver = stream.receiver  # type: ignore[attr-defined]
        out = collect_batches(stream.map(lambda kv: kv[1]))
        dead = collect_batches(stream.dead_letters())  # type: ignore[attr-defined]
        await ssc.start()
        await until(lambda: receiver.records_received == 3, "3 records read")
        ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
        await until(lambda: receiver.records_stored == 3, "3 records stored")
        await advance_batches(ssc, 1)
    assert out[0][1] == [1, 2]
    assert [(d.topic, d.partition, d.offset, d.value) for d in dead[0][1]] == [(topic, 0, 1, b"x")]


def test_after_a_crash_the_receiver_skips_what_its_log_holds() -> None:
    """The blocks the write-ahead log gives back (raw blocks; lists of ``KafkaMessage``
    from a log written before blocks were raw) set, per partition, the highest offset
    stored: the receiver seeks past it when the group assigns it the partition."""
    settings = parse_kafka_params({"bootstrap.servers": "127.0.0.1:9", "group.id": "g"},
                                  for_what="kafka_stream")
    receiver = KafkaReceiver(["t", "u"], settings)

    def message(topic: str, partition: int, offset: int) -> KafkaMessage:
        return KafkaMessage(topic, partition, offset, 0, None, b"%d" % offset)

    builder = KafkaBlockBuilder()
    builder.add("t", 0, [message("t", 0, o) for o in range(10, 15)])
    builder.add("t", 1, [message("t", 1, 3)])
    builder.add("t", 0, [message("t", 0, 15)])
    receiver.on_recovered([[message("t", 1, 7), message("u", 0, 2)], builder.build()])
    assert receiver.stored_through == {("t", 0): 15, ("t", 1): 7, ("u", 0): 2}
