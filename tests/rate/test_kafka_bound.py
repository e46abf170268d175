"""The direct Kafka stream takes its bound from the rate controller at every batch and
splits it over partitions by lag (DESIGN.md section 4), against a real Kafka-protocol
broker (noida-db) on a ManualClock."""

from __future__ import annotations

import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.scheduler.batch_info import BatchInfo, StreamInputInfo
from aiostream_engine.sources.kafka import OffsetRange
from tests.kafka_brokers import NoidaKafka, create_topic, produce, unique_topic

pytestmark = pytest.mark.anyio


async def test_each_batch_takes_the_bound_in_force_split_by_lag(kafka_broker: NoidaKafka) -> None:
    bootstrap = str(kafka_broker.bootstrap)
    topic = unique_topic()
    await create_topic(bootstrap, topic, 2)
    await produce(bootstrap, topic, [(0, b"k", f"a{i}".encode()) for i in range(300)]
                  + [(1, b"k", f"b{i}".encode()) for i in range(100)])
    conf = {"backpressure_enabled": True, "backpressure_initial_rate": 40,
            "backpressure_headroom": 0}
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=conf) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"}
        )
        seen: list[list[OffsetRange]] = []
        stream.foreach_rdd(lambda rdd: seen.append(rdd.offset_ranges()))
        await ssc.start()
        clock = ssc.clock
        assert isinstance(clock, ManualClock)
        infos = []
        for _ in range(2):
            clock.set_time(clock.now() + 1.0)
            infos.append(await ssc._job_scheduler.wait_for_batch(round(clock.now() * 1000)))
        # The job takes no clock time, so no estimate comes from it: feed two batches that
        # processed 100 records in 0.5 s each; the PID's first estimate is then 200/s.
        controller = stream.rate_controller
        assert controller is not None and controller.latest_rate() == 40
        for end in (10.5, 11.5):
            controller.on_batch_completed(BatchInfo(
                end - 0.5, {stream.id: StreamInputInfo(stream.id, 100)}, end - 0.5, end - 0.5, end
            ))
        assert controller.latest_rate() == pytest.approx(200)
        clock.set_time(clock.now() + 1.0)
        infos.append(await ssc._job_scheduler.wait_for_batch(round(clock.now() * 1000)))
    sizes = [[r.until_offset - r.from_offset for r in ranges] for ranges in seen]
    # 40/s over lags 300:100 gives 30 and 10, then over 270:90 the same; then 200/s over
    # 240:80 gives 150 and 50.
    assert sizes == [[30, 10], [30, 10], [150, 50]]
    bounds = [i.stream_id_to_input_info[stream.id].metadata["rate_bound"] for i in infos]
    assert bounds == [40, 40, pytest.approx(200)]
