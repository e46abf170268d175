"""Faults around the direct Kafka stream: offsets gone (noida-db's DeleteRecords), and on
librdkafka's mock cluster a broker down mid-stream, injected request errors and a worker
killed while fetching. In each, the output is exactly the records produced, once each, or
the batch fails with an error naming what is missing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from aiostream_engine import JobFailedError, ManualClock, StreamingContext
from aiostream_engine.sources.kafka import KafkaOffsetsGoneError, TopicAndPartition
from aiostream_engine.testing import advance_batches, collect_batches
from tests.kafka_brokers import MockKafkaCluster, NoidaKafka, create_topic, produce, unique_topic

pytestmark = pytest.mark.anyio

FETCH, LIST_OFFSETS = 1, 2  # Kafka API keys
OFFSET_OUT_OF_RANGE, NOT_LEADER, REQUEST_TIMED_OUT = 1, 6, 7


def context(master: str = "local", **conf: Any) -> StreamingContext:
    return StreamingContext(1.0, master=master, clock=ManualClock(0.0), conf=conf)


def values(partitions: int, per_partition: int) -> list[tuple[int, None, bytes]]:
    return [(i % partitions, None, str(i).encode()) for i in range(partitions * per_partition)]


async def _delete_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


# ---- offsets no longer on the broker -----------------------------------------------------


async def test_gone_offsets_fail_the_batch_naming_topic_partition_and_range(
    kafka_broker: NoidaKafka,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, values(2, 10))
    await _delete_before(kafka_broker.bootstrap, topic, 1, 6)
    with pytest.raises(JobFailedError) as failure:  # raised again when the context exits
        async with context() as ssc:
            stream = ssc.kafka_direct_stream(
                topic, {"bootstrap.servers": kafka_broker.bootstrap},
                from_offsets={TopicAndPartition(topic, 0): 0, TopicAndPartition(topic, 1): 2},
            )
            stream.foreach_rdd(lambda rdd: rdd.count())
            await ssc.start()
            await advance_batches(ssc, 1)
    error = failure.value
    assert ssc.errors == [error]
    assert isinstance(error.cause, KafkaOffsetsGoneError)
    assert f"offsets [2, 6) of {topic}-1 are no longer on the broker" in str(error)


async def test_gone_offsets_are_skipped_and_counted_when_the_reset_policy_says_so(
    kafka_broker: NoidaKafka,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, values(2, 10))
    await _delete_before(kafka_broker.bootstrap, topic, 1, 6)
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap, "auto.offset.reset": "earliest"},
            from_offsets={TopicAndPartition(topic, 0): 0, TopicAndPartition(topic, 1): 2},
        )
        out = collect_batches(stream.map(lambda kv: int(kv[1])))
        await ssc.start()
        infos = await advance_batches(ssc, 1)
    assert not ssc.errors
    assert sorted(out[0][1]) == sorted([i for i in range(20) if i % 2 == 0] + [13, 15, 17, 19])
    assert stream.skipped_records == 4
    assert infos[0].stream_id_to_input_info[0].metadata["skipped_records"] == 4


# ---- the mock cluster: brokers and requests that fail ------------------------------------


async def _run_through(
    cluster: MockKafkaCluster,
    partitions: int,
    per_partition: int,
    batches: int,
    fault: Callable[[StreamingContext], None],
    master: str = "local",
    rate: int = 0,
) -> tuple[StreamingContext, list[list[int]]]:
    """Produce, then read batch by batch with ``fault(ssc)`` run on the driver just after
    batch 2's ranges are cut (before its tasks fetch). A failed batch raises its error
    when the context exits; it is then in ``ssc.errors``."""
    topic = unique_topic()
    cluster.create_topic(topic, partitions)
    await produce(cluster.bootstrap, topic, values(partitions, per_partition))
    got: list[list[int]] = []
    async with context(master, kafka_max_rate_per_partition=rate, kafka_fetch_timeout=20) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": cluster.bootstrap, "auto.offset.reset": "earliest"}
        )

        def hook(time: float, rdd: Any) -> Any:
            if time == 2.0:
                fault(ssc)
            return rdd

        async def keep(rdd: Any) -> None:
            got.append(sorted(int(v) for _, v in await rdd.acollect()))

        stream.transform(hook).foreach_rdd(keep)
        await ssc.start()
        await advance_batches(ssc, batches)
    return ssc, got


def _later(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


async def test_a_broker_down_mid_batch_is_waited_for_and_nothing_is_lost_or_doubled(
    kafka_mock_cluster: MockKafkaCluster,
) -> None:
    def broker_down(ssc: StreamingContext) -> None:
        kafka_mock_cluster.broker_down(1)
        _later(2.0, lambda: kafka_mock_cluster.broker_up(1))

    try:
        ssc, got = await _run_through(kafka_mock_cluster, 3, 20, 4, broker_down, rate=8)
    finally:
        kafka_mock_cluster.broker_up(1)
    assert not ssc.errors
    assert sorted(v for batch in got for v in batch) == list(range(60))
    assert [len(batch) for batch in got] == [24, 24, 12, 0]


async def test_injected_fetch_and_list_offsets_errors_are_retried(
    kafka_mock_cluster: MockKafkaCluster,
) -> None:
    def errors(ssc: StreamingContext) -> None:
        kafka_mock_cluster.push_request_errors(FETCH, NOT_LEADER, REQUEST_TIMED_OUT, NOT_LEADER)
        kafka_mock_cluster.push_request_errors(LIST_OFFSETS, NOT_LEADER, NOT_LEADER)

    try:
        ssc, got = await _run_through(kafka_mock_cluster, 2, 15, 3, errors, rate=10)
    finally:
        kafka_mock_cluster.clear_request_errors(FETCH)
        kafka_mock_cluster.clear_request_errors(LIST_OFFSETS)
    assert not ssc.errors
    assert [len(batch) for batch in got] == [20, 10, 0]
    assert sorted(v for batch in got for v in batch) == list(range(30))


async def test_a_fetch_answered_offset_out_of_range_fails_naming_the_range(
    kafka_mock_cluster: MockKafkaCluster,
) -> None:
    def gone(ssc: StreamingContext) -> None:
        kafka_mock_cluster.push_request_errors(FETCH, *[OFFSET_OUT_OF_RANGE] * 12)

    try:
        with pytest.raises(JobFailedError, match=r"\[5, 10\) are no longer on the broker"):
            await _run_through(kafka_mock_cluster, 1, 10, 2, gone, rate=5)
    finally:
        kafka_mock_cluster.clear_request_errors(FETCH)


async def test_a_worker_killed_while_fetching_reruns_its_range(
    kafka_mock_cluster: MockKafkaCluster,
) -> None:
    def slow_then_kill(ssc: StreamingContext) -> None:
        for broker in (1, 2, 3):
            kafka_mock_cluster.set_rtt(broker, 1500)
        pids = ssc._runner.backend.worker_pids()  # type: ignore[attr-defined]

        def kill() -> None:
            import os
            import signal

            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for broker in (1, 2, 3):
                kafka_mock_cluster.set_rtt(broker, 0)

        _later(0.8, kill)

    try:
        ssc, got = await _run_through(
            kafka_mock_cluster, 2, 30, 3, slow_then_kill, "local[2]", rate=20
        )
    finally:
        for broker in (1, 2, 3):
            kafka_mock_cluster.set_rtt(broker, 0)
    assert not ssc.errors
    assert ssc._runner.backend.replacements >= 1  # type: ignore[attr-defined]
    assert [len(batch) for batch in got] == [40, 20, 0]
    assert sorted(v for batch in got for v in batch) == list(range(60))


async def test_a_broker_restarted_mid_stream_loses_and_doubles_nothing(
    private_kafka_broker: NoidaKafka,
) -> None:
    """noida-db stopped (SIGTERM) after batch 1 and started again on the same port and data:
    the batch cut while it is down reads nothing (the offsets stay where they were), the
    next ones go on from there."""
    import anyio.to_thread

    broker = private_kafka_broker
    topic = unique_topic()
    await create_topic(broker.bootstrap, topic, 2)
    await produce(broker.bootstrap, topic, [(i % 2, None, str(i).encode()) for i in range(10)])
    async with context() as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": broker.bootstrap, "auto.offset.reset": "earliest"}
        )
        out = collect_batches(stream.map(lambda kv: int(kv[1])))
        await ssc.start()
        await advance_batches(ssc, 1)
        await anyio.to_thread.run_sync(broker.stop)
        down = await advance_batches(ssc, 1)
        await anyio.to_thread.run_sync(broker.start)
        more = [(i % 2, None, str(i).encode()) for i in range(10, 20)]
        await produce(broker.bootstrap, topic, more)
        await advance_batches(ssc, 2)
    assert sorted(v for _, batch in out for v in batch) == list(range(20))
    assert [len(batch) for _, batch in out] == [10, 0, 10, 0]
    assert "offsets_unavailable" in down[0].stream_id_to_input_info[0].metadata
    assert stream.offset_lookup_failures == 1
