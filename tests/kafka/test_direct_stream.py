"""The direct Kafka stream against a real Kafka-protocol broker (noida-db), batch by batch
on a ManualClock: ranges cut exactly as Spark's DirectKafkaInputDStream cuts them."""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any

import pytest

from aiostream_engine import ConfigurationError, ManualClock, StreamingContext
from aiostream_engine.sources.kafka import (
    KafkaMessage,
    KafkaTopicMissingError,
    KafkaUnavailableError,
    OffsetRange,
    TopicAndPartition,
)
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import free_port
from tests.kafka_brokers import (
    NoidaKafka,
    add_partitions,
    committed_offsets,
    create_topic,
    produce,
    unique_topic,
)
from tests.masters import MASTERS, resolve_master

pytestmark = pytest.mark.anyio


def context(master: str = "local", **conf: Any) -> StreamingContext:
    return StreamingContext(1.0, master=master, clock=ManualClock(0.0), conf=conf)


def records(partition: int, count: int, start: int = 0) -> list[tuple[int, bytes, bytes]]:
    return [(partition, f"k{partition}".encode(), f"p{partition}-{i}".encode())
            for i in range(start, start + count)]


def ranges_of(stream: Any) -> list[list[OffsetRange]]:
    seen: list[list[OffsetRange]] = []
    stream.foreach_rdd(lambda rdd: seen.append(rdd.offset_ranges()))
    return seen


async def test_ranges_per_batch_are_capped_by_max_rate_per_partition(kafka_bootstrap: str) -> None:
    topic = unique_topic()
    await create_topic(kafka_bootstrap, topic, 4)
    await produce(kafka_bootstrap, topic, records(0, 25) + records(1, 5) + records(3, 12))
    async with context(kafka_max_rate_per_partition=10) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_bootstrap, "auto.offset.reset": "earliest"}
        )
        seen = ranges_of(stream)
        out = collect_batches(stream.glom())
        await ssc.start()
        infos = await advance_batches(ssc, 4)
    r = lambda p, a, b: OffsetRange(topic, p, a, b)  # noqa: E731
    assert seen == [
        [r(0, 0, 10), r(1, 0, 5), r(2, 0, 0), r(3, 0, 10)],
        [r(0, 10, 20), r(1, 5, 5), r(2, 0, 0), r(3, 10, 12)],
        [r(0, 20, 25), r(1, 5, 5), r(2, 0, 0), r(3, 12, 12)],
        [r(0, 25, 25), r(1, 5, 5), r(2, 0, 0), r(3, 12, 12)],
    ]
    # One RDD partition per Kafka partition, each holding exactly its range's records.
    assert out[0][1] == [
        [("k0", f"p0-{i}") for i in range(10)],
        [("k1", f"p1-{i}") for i in range(5)],
        [],
        [("k3", f"p3-{i}") for i in range(10)],
    ]
    assert out[2][1][0] == [("k0", f"p0-{i}") for i in range(20, 25)]
    assert [i.stream_id_to_num_records for i in infos] == [{0: 25}, {0: 12}, {0: 5}, {0: 0}]
    assert infos[1].stream_id_to_input_info[0].metadata["offsets"] == [
        {"topic": r.topic, "partition": r.partition, "fromOffset": r.from_offset,
         "untilOffset": r.until_offset} for r in seen[1]
    ]


async def test_without_a_limit_a_batch_reads_up_to_the_latest_offset(kafka_broker: NoidaKafka) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, records(0, 3))
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            [topic], {"bootstrap.servers": kafka_broker.bootstrap, "auto.offset.reset": "smallest"}
        )
        seen = ranges_of(stream)
        out = collect_batches(stream)
        await ssc.start()
        await advance_batches(ssc, 1)
        await produce(kafka_broker.bootstrap, topic, records(0, 2, start=3) + records(1, 4))
        await advance_batches(ssc, 2)
    assert seen == [
        [OffsetRange(topic, 0, 0, 3), OffsetRange(topic, 1, 0, 0)],
        [OffsetRange(topic, 0, 3, 5), OffsetRange(topic, 1, 0, 4)],
        [OffsetRange(topic, 0, 5, 5), OffsetRange(topic, 1, 4, 4)],
    ]
    assert [len(batch) for _, batch in out] == [3, 6, 0]


async def test_partitions_added_while_running_are_read_from_their_beginning(
    kafka_broker: NoidaKafka,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(topic, {"bootstrap.servers": kafka_broker.bootstrap})
        seen = ranges_of(stream)
        out = collect_batches(stream.map(lambda kv: kv[1]))
        await ssc.start()
        await produce(kafka_broker.bootstrap, topic, records(1, 2))
        await advance_batches(ssc, 1)
        await add_partitions(kafka_broker.bootstrap, topic, 4)
        await produce(kafka_broker.bootstrap, topic, records(2, 1) + records(3, 3))
        await advance_batches(ssc, 1)
    assert [[(r.partition, r.from_offset, r.until_offset) for r in batch] for batch in seen] == [
        [(0, 0, 0), (1, 0, 2)],
        [(0, 0, 0), (1, 2, 2), (2, 0, 1), (3, 0, 3)],
    ]
    assert sorted(out[1][1]) == ["p2-0", "p3-0", "p3-1", "p3-2"]


@pytest.mark.parametrize("master", MASTERS)
async def test_ten_thousand_records_through_map_reduce_equal_a_plain_count(
    kafka_bootstrap: str, master: str, request: pytest.FixtureRequest
) -> None:
    """On every master: the tasks fetch their ranges where they run (a worker process, a
    Dask worker, a thread of this process)."""
    topic = unique_topic()
    await create_topic(kafka_bootstrap, topic, 4)
    sent = [(i % 4, None, f"dev-{i % 37:02d}".encode()) for i in range(10_000)]
    await produce(kafka_bootstrap, topic, sent)
    async with context(resolve_master(request, master)) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_bootstrap, "auto.offset.reset": "earliest"}
        )
        out = collect_batches(stream.map(lambda kv: (kv[1], 1)).reduce_by_key(operator.add))
        await ssc.start()
        await advance_batches(ssc, 2)
    assert dict(out[0][1]) == Counter(v.decode() for _, _, v in sent)
    assert out[1][1] == []


async def test_starting_offsets_from_offsets_then_committed_then_reset(kafka_broker: NoidaKafka) -> None:
    topic = unique_topic()
    group = unique_topic("group")
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 3)
    await produce(bootstrap, topic, records(0, 10) + records(1, 10) + records(2, 10))
    params = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest"}
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(topic, params)
        stream.foreach_rdd(lambda rdd: stream.commit_async([rdd.offset_ranges()[1]._replace(until_offset=7)]))
        await ssc.start()
        await advance_batches(ssc, 2)  # the commit goes out when the second batch is cut
    assert await committed_offsets(bootstrap, group) == {(topic, 1): 7}
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, params, from_offsets={TopicAndPartition(topic, 0): 4}
        )
        seen = ranges_of(stream)
        await ssc.start()
        await advance_batches(ssc, 1)
    # partition 0 from from_offsets, 1 from the group's commit, 2 from "latest".
    assert seen == [
        [OffsetRange(topic, 0, 4, 10), OffsetRange(topic, 1, 7, 10), OffsetRange(topic, 2, 10, 10)]
    ]


async def test_commit_async_commits_after_the_output_and_calls_back(kafka_bootstrap: str) -> None:
    topic = unique_topic()
    group = unique_topic("group")
    await create_topic(kafka_bootstrap, topic, 2)
    await produce(kafka_bootstrap, topic, records(0, 4) + records(1, 6))
    calls: list[tuple[dict[TopicAndPartition, int], BaseException | None]] = []
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_bootstrap, "group.id": group,
                    "auto.offset.reset": "earliest"}
        )
        offsets: list[OffsetRange] = []

        def keep(rdd: Any) -> Any:  # Spark's idiom: take the ranges in transform
            offsets[:] = rdd.offsetRanges()
            return rdd

        def output(rdd: Any) -> None:
            rdd.count()
            stream.commitAsync(offsets, lambda o, e: calls.append((o, e)))

        stream.transform(keep).foreach_rdd(output)
        await ssc.start()
        await advance_batches(ssc, 1)
        assert await committed_offsets(kafka_bootstrap, group) == {}
    # stopping commits what is still queued
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 4, (topic, 1): 6}
    assert calls == [({TopicAndPartition(topic, 0): 4, TopicAndPartition(topic, 1): 6}, None)]


async def test_message_handler_sees_topic_partition_offset_timestamp_and_headers(
    kafka_broker: NoidaKafka,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 1)
    await produce(kafka_broker.bootstrap, topic, [(0, b"a", b"1"), (0, None, b"2")])
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap, "auto.offset.reset": "earliest"},
            value_decoder=lambda b: int(b), message_handler=lambda m: m,
        )
        out = collect_batches(stream)
        await ssc.start()
        await advance_batches(ssc, 1)
    messages: list[KafkaMessage] = out[0][1]
    assert [(m.topic, m.partition, m.offset, m.key, m.message) for m in messages] == [
        (topic, 0, 0, "a", 1), (topic, 0, 1, None, 2)
    ]
    assert all(m.timestamp > 1_600_000_000_000 for m in messages)


async def test_ranges_cut_inside_one_record_batch_read_exactly_their_records(
    kafka_broker: NoidaKafka,
) -> None:
    """Ten records in one record batch, read in ranges that start and end inside it."""
    from aiokafka import AIOKafkaProducer

    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(10):
            batch.append(key=None, value=str(i).encode(), timestamp=None)
        batch.close()
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()
    async with context(kafka_max_rate_per_partition=4) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap},
            from_offsets={TopicAndPartition(topic, 0): 3},
        )
        out = collect_batches(stream.map(lambda kv: int(kv[1])))
        await ssc.start()
        await advance_batches(ssc, 3)
    assert [batch for _, batch in out] == [[3, 4, 5, 6], [7, 8, 9], []]


async def _transactions(bootstrap: str, topic: str) -> None:
    """A committed transaction (a0, a1), an aborted one (b0, b1), a record outside any
    transaction (c0), a committed transaction (d0): with their markers, offsets 0 to 8."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topic}")
    await producer.start()
    try:
        for values, commit in ((["a0", "a1"], True), (["b0", "b1"], False)):
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value.encode(), partition=0)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
        await produce(bootstrap, topic, [(0, None, b"c0")])
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"d0", partition=0)
        await producer.commit_transaction()
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("isolation", "expected"),
    [("read_committed", ["a0", "a1", "c0", "d0"]),
     ("read_uncommitted", ["a0", "a1", "b0", "b1", "c0", "d0"])],
)
async def test_read_committed_skips_aborted_transactions_and_every_batch_skips_markers(
    kafka_broker: NoidaKafka, isolation: str, expected: list[str]
) -> None:
    """One range over every transaction. (noida-db 0.2.3 answers a Fetch with aborted
    transactions that ended before its offset, so a read_committed range starting after
    an abort marker loses the producer's later committed records, with aiokafka's own
    consumer too: Kafka returns only those overlapping the fetch.)"""
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 1)
    await _transactions(kafka_broker.bootstrap, topic)
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap, "isolation.level": isolation,
                    "auto.offset.reset": "earliest"},
        )
        seen = ranges_of(stream)
        out = collect_batches(stream.map(lambda kv: kv[1]))
        await ssc.start()
        await advance_batches(ssc, 2)
    assert [batch for _, batch in out] == [expected, []]
    assert seen == [[OffsetRange(topic, 0, 0, 9)], [OffsetRange(topic, 0, 9, 9)]]


async def test_a_missing_topic_is_named_at_start(kafka_broker: NoidaKafka) -> None:
    async with context() as ssc:
        stream = ssc.kafka_direct_stream("no-such-topic", {"bootstrap.servers": kafka_broker.bootstrap})
        stream.foreach_rdd(lambda rdd: None)
        with pytest.raises(KafkaTopicMissingError, match="'no-such-topic'"):
            await ssc.start()


async def test_an_unreachable_cluster_fails_the_start_after_bounded_attempts() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with context() as ssc:
        stream = ssc.kafka_direct_stream("t", {"bootstrap.servers": address})
        stream.foreach_rdd(lambda rdd: None)
        with pytest.raises(KafkaUnavailableError, match=f"{address} after 5 attempts"):
            await ssc.start()


def test_kafka_params_are_checked_when_the_stream_is_built() -> None:
    ssc = context()
    with pytest.raises(ConfigurationError, match="'fetch.max.byts'"):
        ssc.kafka_direct_stream("t", {"bootstrap.servers": "h:1", "fetch.max.byts": 1})
    with pytest.raises(ConfigurationError, match="bootstrap.servers"):
        ssc.kafka_direct_stream("t", {"group.id": "g"})
    with pytest.raises(ConfigurationError, match="enable.auto.commit"):
        ssc.kafka_direct_stream("t", {"bootstrap.servers": "h:1", "enable.auto.commit": "true"})
    with pytest.raises(ConfigurationError, match="auto.offset.reset"):
        ssc.kafka_direct_stream("t", {"bootstrap.servers": "h:1", "auto.offset.reset": "begin"})
    stream = ssc.kafka_direct_stream("t", {"metadata.broker.list": "h:1"})
    with pytest.raises(ConfigurationError, match="group.id"):
        stream.commit_async([OffsetRange("t", 0, 0, 1)])


async def test_recovered_batches_read_the_same_ranges_and_new_ones_continue_after(
    kafka_broker: NoidaKafka, tmp_path: Any
) -> None:
    """Batch 3 is cut, then the engine stops before its output ran. After get_or_create
    it reads exactly batch 3's ranges again, although more records arrived meanwhile and
    the group committed nothing; batch 4 starts where batch 3 ended."""
    import anyio

    topic = unique_topic()
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 2)
    await produce(bootstrap, topic, records(0, 4) + records(1, 2))
    checkpoint = str(tmp_path / "checkpoint")
    params = {"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
              "auto.offset.reset": "earliest"}
    seen: list[tuple[float, list[OffsetRange], list[Any]]] = []
    blocked = anyio.Event()

    def setup(block_at: float | None) -> StreamingContext:
        ssc = StreamingContext(
            1.0, master="local", clock=ManualClock(0.0), conf={"kafka_max_rate_per_partition": 3}
        )

        async def output(time: float, rdd: Any) -> None:
            if time == block_at:
                blocked.set()
                await anyio.sleep_forever()
            seen.append((time, rdd.offset_ranges(), sorted(await rdd.acollect())))

        ssc.kafka_direct_stream(topic, params).foreach_rdd(output)
        ssc.checkpoint(checkpoint)
        return ssc

    async with StreamingContext.get_or_create(checkpoint, lambda: setup(3.0)) as ssc:
        await ssc.start()
        await advance_batches(ssc, 2)
        await produce(bootstrap, topic, records(1, 5, start=2))
        ssc.clock.set_time(3.0)  # type: ignore[attr-defined]
        await blocked.wait()
        await ssc.stop()
    assert [(t, [(r.partition, r.from_offset, r.until_offset) for r in rs]) for t, rs, _ in seen] == [
        (1.0, [(0, 0, 3), (1, 0, 2)]), (2.0, [(0, 3, 4), (1, 2, 2)])
    ]
    await produce(bootstrap, topic, records(0, 3, start=4))
    seen.clear()
    restarted = StreamingContext.get_or_create(checkpoint, lambda: setup(None))
    restarted.clock.set_time(3.0)  # type: ignore[attr-defined]
    async with restarted as ssc:
        await ssc.start()
        await advance_batches(ssc, 1)
        await ssc._job_scheduler.wait_for_batch(4000)
    assert [(t, [(r.partition, r.from_offset, r.until_offset) for r in rs]) for t, rs, _ in seen] == [
        (3.0, [(0, 4, 4), (1, 2, 5)]), (4.0, [(0, 4, 7), (1, 5, 7)])
    ]
    assert seen[0][2] == [("k1", "p1-2"), ("k1", "p1-3"), ("k1", "p1-4")]


async def test_undecodable_records_go_to_dead_letters_with_topic_partition_offset_and_error(
    kafka_broker: NoidaKafka,
) -> None:
    from aiostream_engine.sources.kafka import KafkaDeadLetter

    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, [
        (0, None, b"1"), (0, None, b"oops"), (1, b"k", b"3"), (0, None, b"4"), (1, None, b"\xff"),
    ])
    async with context("local[2]") as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap, "auto.offset.reset": "earliest"},
            value_decoder=lambda b: int(b.decode()),
        )
        out = collect_batches(stream.map(lambda kv: kv[1]))
        dead = collect_batches(stream.dead_letters())
        await ssc.start()
        infos = await advance_batches(ssc, 1)
    assert sorted(out[0][1]) == [1, 3, 4]
    assert [d[:5] for d in dead[0][1]] == [
        KafkaDeadLetter(topic, 0, 1, None, b"oops", "")[:5],
        KafkaDeadLetter(topic, 1, 1, None, b"\xff", "")[:5],
    ]
    assert dead[0][1][0].error.startswith("ValueError: invalid literal for int()")
    assert dead[0][1][1].error.startswith("UnicodeDecodeError")
    info = infos[0].stream_id_to_input_info[0]
    assert (info.num_records, info.metadata["dead_letters"]) == (3, 2)
    assert stream.dead_letter_count == 2
